"""Export photos (:mod:`training.data.photos`): held-out photos to compare, training photos to calibrate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from training.checkpoint import Checkpoint
from training.data.photos import ExportImages, PhotoError, images_for_checkpoint, load_image_set


def test_images_come_from_the_held_out_and_training_splits(images: ExportImages) -> None:
    assert len(images.evaluation) == 16 and "test+val" in images.evaluation.source
    assert images.calibration is not None and len(images.calibration) == 12
    assert images.evaluation.pixels.shape[1:] == (64, 64, 3) and images.evaluation.pixels.dtype == np.uint8
    assert images.evaluation.labels is not None and set(images.evaluation.labels.tolist()) == {0, 1}


def test_missing_or_empty_photos_are_named(ckpt: Checkpoint, tmp_path: Path) -> None:
    with pytest.raises(PhotoError, match=r"^No photos in nothing\.$"):
        load_image_set([], ckpt, source="nothing")
    with pytest.raises(PhotoError, match=r"^--images .*nope: no such file or folder\.$"):
        images_for_checkpoint(ckpt, None, tmp_path / "nope")
    bare = dataclasses.replace(ckpt, data={})
    with pytest.raises(PhotoError, match="the checkpoint names no manifest, not found"):
        images_for_checkpoint(bare, None)
