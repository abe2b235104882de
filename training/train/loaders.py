"""What a run reads each epoch: the augmented training loader, sharded by rank, and the validation inputs.

The validation photos are decoded and resized once (``(N, H, W, 3)`` uint8) and reused every
epoch and for calibration; with ``data.cache_decoded`` the training photos are decoded once too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from model.imaging import DecodedImage
from model.logs import log_event
from training.config import TrainConfig
from training.data.augment import Augmenter
from training.data.dataset import (
    EpochSampler,
    Splits,
    TrainDataset,
    decode_all,
    label_of,
    read_image,
    worker_init,
)
from training.data.manifest import Record
from training.train.inference import load_inputs_for
from training.train.startup import Dist, threads_for

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """The training loader and the validation inputs of a run."""

    splits: Splits
    info: dict[str, Any]  # manifest, its hash and the split sizes: recorded in every checkpoint
    train: TrainDataset
    sampler: EpochSampler  # this rank's share of each epoch's keys
    loader: DataLoader  # batches of ``train.batch_size // world`` photos
    val_inputs: torch.Tensor  # (N_val, H, W, 3) uint8
    val_labels: np.ndarray  # (N_val,) 1 = counterfeit

    @property
    def has_val(self) -> bool:
        """Whether there are validation photos (the final model of cross-fitting has none)."""
        return len(self.val_labels) > 0


def decode_cache(cfg: TrainConfig, records: list[Record], d: Dist) -> list[DecodedImage] | None:
    """Every training photo decoded once, when they fit in ``data.cache_max_gb``; else ``None``.

    The size is estimated from the first photo; the main process logs ``decode_cache_skipped``
    when the cache would not fit.
    """
    if not cfg.data.cache_decoded:
        return None
    first = read_image(records[0], draft_size=cfg.data.draft_size).pixels
    need_gb = first.nbytes * len(records) / 2**30
    if need_gb <= cfg.data.cache_max_gb:
        return decode_all(records, draft_size=cfg.data.draft_size, threads=threads_for(cfg, d))
    if d.main:
        log_event(log, "decode_cache_skipped", need_gb=round(need_gb, 2), limit_gb=cfg.data.cache_max_gb)
    return None


def load_data(cfg: TrainConfig, splits: Splits, info: dict[str, Any], d: Dist) -> RunData:
    """The training loader (seeded sampler, augmentation keyed by epoch and index) and validation inputs.

    Args:
        cfg: The run's configuration.
        splits: The run's records by split.
        info: What they are (:func:`training.train.run.prepare_data`), kept with them.
        d: This process's place in the run; each rank loads its shard of every batch.
    """
    augmenter = Augmenter(cfg.augment, image_size=cfg.data.image_size, resize=cfg.data.resize)
    workers = cfg.data.num_workers
    train_ds = TrainDataset(
        splits.train,
        augmenter=augmenter,
        draft_size=cfg.data.draft_size,
        seed=cfg.run.seed,
        cache=decode_cache(cfg, splits.train, d),
    )
    sampler = EpochSampler(len(train_ds), seed=cfg.run.seed, rank=d.rank, world=d.world)
    per_rank_batch = cfg.train.batch_size // d.world
    loader = DataLoader(
        train_ds,
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=workers,
        drop_last=len(sampler) >= per_rank_batch,
        persistent_workers=workers > 0,
        worker_init_fn=worker_init if workers else None,
        generator=torch.Generator().manual_seed(cfg.run.seed),
        prefetch_factor=4 if workers else None,
    )
    val_labels = np.array([label_of(r) for r in splits.val])
    val_inputs = load_inputs_for(splits.val, cfg)
    return RunData(splits, info, train_ds, sampler, loader, val_inputs, val_labels)
