"""Splits, sampling and sample targets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tinydata import make_dataset

from model.flags import FLAG_NAMES
from training.config import AugmentConfig, DataConfig
from training.data.augment import Augmenter
from training.data.dataset import (
    MAX_TELL_BOXES,
    DataError,
    EpochSampler,
    TrainDataset,
    flag_target,
    make_splits,
    tell_boxes,
)
from training.data.manifest import load_manifest


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list:
    return load_manifest(make_dataset(tmp_path_factory.mktemp("tiny"), n=20, size=64, with_split=True))


def test_sampler_shards_cover_every_photo_once_per_epoch_and_depend_on_the_epoch() -> None:
    shards = [list(EpochSampler(10, seed=3, rank=r, world=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(shards[0] + shards[1]) == list(range(10))
    s = EpochSampler(10, seed=3)
    s.set_epoch(1)
    second = list(s)
    assert sorted(k - 10 for k in second) == list(range(10))  # keys carry the epoch
    assert [k - 10 for k in second] != list(EpochSampler(10, seed=3))
    odd = [list(EpochSampler(7, seed=0, rank=r, world=2)) for r in range(2)]
    assert len(odd[0]) == len(odd[1]) == 4 and set(odd[0] + odd[1]) == set(range(7))


def _train_set(records: list, image_size: int) -> TrainDataset:
    augmenter = Augmenter(AugmentConfig(), image_size=image_size, resize="stretch")
    return TrainDataset(records, augmenter=augmenter, draft_size=64, seed=0)


def test_training_samples_are_keyed_by_epoch_and_index(records: list) -> None:
    ds = _train_set(records, image_size=32)
    a, b, c = ds[3], ds[3], ds[3 + len(ds)]  # same epoch twice, then the next epoch
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert a[0].shape == (32, 32, 3) and a[1] == 1.0  # index 3 is counterfeit
    assert a[3] == 1.0 and a[2][FLAG_NAMES.index("color_shift")] == 1.0


def test_flags_none_means_unlabelled_and_empty_means_no_tells(records: list) -> None:
    target, has = flag_target(replace(records[0], flags=None))
    assert has == 0.0 and not target.any()
    target, has = flag_target(replace(records[0], flags=()))
    assert has == 1.0 and not target.any()


def test_manifest_split_is_used_and_checked(records: list) -> None:
    cfg = DataConfig(manifest="m.csv")
    splits = make_splits(records, cfg, need_test=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 4, 4)
    no_val = [replace(r, split="train") if r.split == "val" else r for r in records]
    with pytest.raises(DataError, match="val split is empty"):
        make_splits(no_val, cfg, need_test=True)
    one_class_val = [r for r in records if not (r.split == "val" and r.label == "genuine")]
    with pytest.raises(DataError, match="val split has no genuine photos"):
        make_splits(one_class_val, cfg, need_test=True)


def test_one_class_dataset_is_refused(records: list) -> None:
    genuine = [r for r in records if r.label == "genuine"]
    with pytest.raises(DataError, match=r"only genuine photos .*needs both genuine and counterfeit"):
        make_splits(genuine, DataConfig(manifest="m.csv"), need_test=True)


def test_missing_split_column_with_split_manifest_is_refused(records: list) -> None:
    loose = [replace(r, split=None) for r in records]
    with pytest.raises(DataError, match="no split"):
        make_splits(loose, DataConfig(manifest="m.csv", split="manifest"), need_test=True)


def test_tiny_dataset_is_valid(tmp_path: Path) -> None:
    recs = load_manifest(make_dataset(tmp_path, n=8, size=48))
    assert {r.label for r in recs} == {"genuine", "counterfeit"}
    assert all(np.isfinite([b.x0 for r in recs for b in r.boxes]))


def test_photos_whose_tells_are_all_boxed_get_dense_targets(records: list) -> None:
    ds = _train_set(records, image_size=64)
    fake = ds[3]  # counterfeit with boxed color_shift (and maybe stitch_irregular)
    boxes, dense = fake[4], fake[5]
    assert dense == 1.0 and boxes.shape == (MAX_TELL_BOXES, 5)
    rows = boxes[boxes[:, 0] >= 0]
    assert {FLAG_NAMES[int(i)] for i in rows[:, 0]} == set(records[3].flags)
    assert ((rows[:, 1:] >= -1) & (rows[:, 1:] <= 65)).all()  # in model-input pixels
    genuine = ds[0]
    assert genuine[5] == 1.0 and (genuine[4][:, 0] == -1).all()  # flags=(): nowhere a tell
    unlabelled = _train_set([replace(r, flags=None) for r in records], image_size=64)
    assert unlabelled[3][5] == 0.0  # no flag labels: the maps are left to the photo-level loss
    unboxed = [replace(r, boxes=tuple(b for b in r.boxes if b.name == "product")) for r in records]
    assert tell_boxes(unboxed[3]) is None  # a flag without a box cannot be located
    assert tell_boxes(replace(records[3], flags=())) is None  # a fake's unnamed tells are somewhere
