"""Fixtures of the export tests: a split manifest of real sneakers photos and a tiny checkpoint.

Tiny random-weight efficientnet_lite0 checkpoints at 64 px and a few real sneakers photos keep
the export tests fast.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from factories import tiny_checkpoint

from training.checkpoint import Checkpoint
from training.data.manifest import load_manifest, write_manifest
from training.data.photos import ExportImages, images_from_manifest


@pytest.fixture(scope="module")
def photo_manifest(sneakers_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """28 real sneakers photos with a split column: 12 train, 8 val, 8 test, both labels in each."""
    records = load_manifest(sneakers_dir)
    splits = ["train"] * 6 + ["val"] * 4 + ["test"] * 4
    chosen = []
    for label in ("genuine", "counterfeit"):
        pool = [r for r in records if r.label == label]
        chosen += [dataclasses.replace(r, split=s) for r, s in zip(pool, splits, strict=False)]
    path = tmp_path_factory.mktemp("photos") / "split.csv"
    write_manifest(chosen, path)
    return path


@pytest.fixture(scope="module")
def ckpt(photo_manifest: Path, sneakers_dir: Path) -> Checkpoint:
    c = tiny_checkpoint(64)
    c.data = {
        "manifest": str(sneakers_dir),
        "split_manifest": str(photo_manifest),
        "manifest_hash": "1" * 64,
        "n_train": 12,
        "n_val": 8,
        "n_test": 8,
    }
    return c


@pytest.fixture(scope="module")
def images(ckpt: Checkpoint, photo_manifest: Path) -> ExportImages:
    return images_from_manifest(photo_manifest, ckpt)
