"""The predictor alone: batch-independence, boxes in original pixels, overlays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from factories import jpeg_bytes
from PIL import Image

from model.imaging import Geometry, ImageTooLargeError
from serving.predictor import Predictor, evidence_overlay


@pytest.fixture(scope="module")
def predictor(tiny_bundle_dir: Path) -> Predictor:
    return Predictor.load(tiny_bundle_dir, threads=1, max_pixels=10_000_000)


def test_outputs_do_not_depend_on_batch_company(predictor: Predictor) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    together = predictor.infer(x)
    alone = [predictor.infer(x[i : i + 1])[0] for i in range(5)]
    for a, b in zip(together, alone, strict=True):
        assert a.p_genuine == b.p_genuine
        assert np.array_equal(a.flag_maps, b.flag_maps) and a.ood_score == b.ood_score


def test_boxes_are_in_original_pixels(predictor: Predictor) -> None:
    # 64x64 input from a 1280x640 photo: a 32x32 model cell is 640x320 original pixels
    outcome = predictor.score_item([("w.jpg", jpeg_bytes(1280, 640, seed=3))])
    geometry = Geometry(1280 / 64, 640 / 64, 0, 0, (1280, 640))
    for f in outcome.images[0].flagged_features:
        assert f.box.x0 % 640 == 0 and f.box.x1 % 640 == 0
        assert f.box.y0 % 320 == 0 and f.box.y1 % 320 == 0
        assert geometry.to_original((0, 0, 64, 64)) == (0, 0, 1280, 640)


def test_max_pixels_is_enforced(predictor: Predictor) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(buf, "JPEG")  # 12 MP > the fixture's 10 MP
    with pytest.raises(ImageTooLargeError, match=r"12\.0 MP"):
        predictor.prepare(buf.getvalue())


def test_overlay_follows_the_map_and_crops_letterbox() -> None:
    cam = np.zeros((2, 2))
    cam[0, 1] = 5.0  # strongest evidence top-right
    # letterboxed 200x100 photo on a 64x64 input: content rows 16..48
    g = Geometry(200 / 64, 100 / 32, 0.0, 16.0, (200, 100))
    rgba = np.asarray(evidence_overlay(cam, g, (64, 64), (200, 100)))
    assert rgba.shape == (100, 200, 4)
    assert rgba[10, 190, 3] > rgba[90, 10, 3] == 0
