"""The predictor alone: batch-independence, boxes in original pixels, overlays."""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from factories import jpeg_bytes
from PIL import Image

from model.imaging import CorruptImageError, Geometry, ImageTooLargeError, decode_image
from serving.predictor import MAX_RUN_BATCH, Predictor, evidence_overlay


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


class _CountingSession:
    """An ONNX Runtime session that records the batch size of every call."""

    def __init__(self, session: object) -> None:
        self.session = session
        self.sizes: list[int] = []

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.sizes.append(len(feed["pixels"]))
        return self.session.run(names, feed)  # type: ignore[attr-defined, no-any-return]


def test_large_batches_run_in_bounded_calls_with_the_same_results(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (2 * MAX_RUN_BATCH + 3, 64, 64, 3), dtype=np.uint8)
    names = predictor.output_names
    whole = dict(zip(names, predictor.session.run(names, {"pixels": x}), strict=True))  # one call
    counting = _CountingSession(predictor.session)
    monkeypatch.setattr(predictor, "session", counting)
    raws = predictor.infer(x)
    assert counting.sizes == [MAX_RUN_BATCH, MAX_RUN_BATCH, 3] and len(raws) == len(x)
    for i, raw in enumerate(raws):
        assert abs(raw.p_genuine - float(whole["p_genuine"][i])) <= 1e-5
        assert raw.embedding is not None and np.allclose(raw.embedding, whole["embedding"][i], atol=1e-5)


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


@pytest.fixture(scope="module")
def flagging_predictor(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """The tiny bundle with every flag threshold at 0, so every flag is raised with a box."""
    from model.bundle import load_bundle, rewrite_manifest

    d = tmp_path_factory.mktemp("flagging") / "bundle"
    shutil.copytree(tiny_bundle_dir, d)
    flags = load_bundle(d).manifest.flags
    rewrite_manifest(d, {"decision": {"flag_thresholds": dict.fromkeys(flags, 0.0)}})
    return Predictor.load(d, threads=1, max_pixels=10_000_000)


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_boxes_of_rotated_draft_decoded_photos_are_in_original_pixels(
    flagging_predictor: Predictor, orientation: int
) -> None:
    # stored 2560x1280: decoded at 1/8 scale (draft_size 128), then turned by its EXIF tag.
    # The 64 px input's 2x2 map cells are half the *oriented* photo each way.
    photo = jpeg_bytes(2560, 1280, seed=5, exif_orientation=orientation)
    decoded = decode_image(photo, draft_size=flagging_predictor.manifest.input.draft_size)
    w, h = (1280, 2560) if orientation in (6, 8) else (2560, 1280)
    assert decoded.original_size == (w, h) and decoded.pixels.shape[:2] == (h // 8, w // 8)
    image = flagging_predictor.score_item([("p.jpg", photo)]).images[0]
    assert (image.width, image.height) == (w, h)
    assert len(image.flagged_features) == len(flagging_predictor.manifest.flags)
    for f in image.flagged_features:
        b = f.box
        assert 0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h
        assert b.x0 % (w // 2) == b.x1 % (w // 2) == 0 and b.y0 % (h // 2) == b.y1 % (h // 2) == 0


def test_a_decoder_fault_is_a_corrupt_image_not_a_crash(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder can raise anything on hostile bytes (Pillow's EXIF code: struct.error); that
    photo fails as corrupt_image, nothing else."""
    import serving.predictor

    def broken(*args: object, **kwargs: object) -> None:
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(serving.predictor, "decode_image", broken)
    with pytest.raises(CorruptImageError, match=r"could not be decoded \(struct\.error\)"):
        predictor.prepare(jpeg_bytes(100, 80))
