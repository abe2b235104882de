"""Section 6 of ``make bench``: training photos per second of a config, with the training code.

Usage: ``python -m benchmarks.training_speed --config configs/sneakers.yaml --config configs/synthetic.yaml``

Builds the config's network (``pretrained: none``: the same arithmetic as ImageNet weights), its
optimizer, schedule and EMA, its augmenting loader (workers, decoded-photo cache) over a sample
of its photos, and runs :func:`training.train.loop.train_one_epoch`: forward, losses, backward,
clipping, AdamW, EMA, exactly as ``authlens train`` does. The photos are the config's manifest
when it exists (a seeded sample), else generated synthetic photos (``training.data.synth``).
Photos per second are counted between the end of the warm-up batches and the last batch.
Validation, calibration and evaluation are not included. Prints one JSON object per config.

Runs in its own process: ``tune_cpu`` changes the allocator for the whole process.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any


def _records(cfg: Any, n: int, tmp: Path) -> tuple[list[Any], str]:
    from training.data.manifest import load_manifest
    from training.data.synth import generate

    manifest = Path(cfg.data.manifest)
    if manifest.exists():
        records = load_manifest(manifest)
        random.Random(0).shuffle(records)
        return records[:n], f"{manifest} ({min(n, len(records))} of {len(records)} photos)"
    records = generate(tmp / "synth", n=n, seed=0, size=384, contact_sheet_count=0)
    return records, f"{n} generated synthetic photos at 384 px ({manifest} absent)"


def measure(
    config: Path,
    *,
    batches: int,
    warm_batches: int,
    batch_size: int | None,
    max_photos: int,
    image_size: int | None = None,
) -> dict[str, Any]:
    """Train ``warm_batches + batches`` steps of ``config`` and return its photos per second."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from model.configio import load_config
    from training.config import TrainConfig
    from training.data.augment import Augmenter
    from training.data.dataset import TrainDataset, decode_all, worker_init
    from training.train.loop import train_one_epoch
    from training.train.losses import class_weights
    from training.train.optim import build_learner
    from training.train.runtime import tune_cpu
    from training.train.startup import Dist, build_network, seed_everything, threads_for

    overrides = ["model.pretrained=none"]
    if batch_size:
        overrides.append(f"train.batch_size={batch_size}")
    if image_size:
        overrides += [f"data.image_size={image_size}", f"data.draft_size={image_size}"]
    cfg = load_config(TrainConfig, config, overrides)
    tune_cpu()
    d = Dist()
    threads = threads_for(cfg, d)
    torch.set_num_threads(threads)
    seed_everything(cfg.run.seed)
    bs = cfg.train.batch_size
    total = warm_batches + batches
    with tempfile.TemporaryDirectory(prefix="authlens-bench-train-") as tmp:
        records, source = _records(cfg, min(bs * total, max_photos), Path(tmp))
        cache = (
            decode_all(records, draft_size=cfg.data.draft_size, threads=threads)
            if cfg.data.cache_decoded
            else None
        )
        augmenter = Augmenter(cfg.augment, image_size=cfg.data.image_size, resize=cfg.data.resize)
        ds = TrainDataset(
            records, augmenter=augmenter, draft_size=cfg.data.draft_size, seed=cfg.run.seed, cache=cache
        )
        net = build_network(cfg)
        learner = build_learner(net, cfg, total, d)
        workers = cfg.data.num_workers
        loader = DataLoader(
            ds,
            batch_size=bs,
            sampler=list(range(bs * total)),  # keys past the sample are later epochs' augmentations
            num_workers=workers,
            drop_last=True,
            worker_init_fn=worker_init if workers else None,
            prefetch_factor=4 if workers else None,
        )
        weights = class_weights(ds.labels) if cfg.train.class_balance else None
        marks: list[float] = []
        start = time.perf_counter()
        stats, _ = train_one_epoch(
            learner,
            loader,
            cfg,
            step=0,
            weights=weights,
            world=1,
            progress=lambda *_: marks.append(time.perf_counter()),
        )
    t0 = marks[warm_batches - 1] if warm_batches else start
    seconds = marks[-1] - t0
    return {
        "config": str(config),
        "data": source,
        "backbone": cfg.model.backbone,
        "image_size": cfg.data.image_size,
        "frozen": list(cfg.model.freeze),
        "batch_size": bs,
        "batches_timed": batches,
        "warm_batches": warm_batches,
        "threads": threads,
        "loader_workers": workers,
        "decoded_cache": cache is not None,
        "dense_loss": cfg.train.dense_loss_weight > 0,
        "ema": cfg.train.ema,
        "photos_per_s": round(batches * bs / seconds, 1),
        "step_s": round(seconds / batches, 3),
        "loss": round(float(stats.loss), 4) if np.isfinite(stats.loss) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", type=Path, action="append", required=True, help="Repeat for several.")
    parser.add_argument("--batches", type=int, default=6, help="Timed batches.")
    parser.add_argument("--warm-batches", type=int, default=2, help="Batches run first, not timed.")
    parser.add_argument("--batch-size", type=int, default=None, help="Override train.batch_size.")
    parser.add_argument("--image-size", type=int, default=None, help="Override data.image_size (smoke runs).")
    parser.add_argument("--max-photos", type=int, default=256, help="Photos sampled (reused beyond).")
    args = parser.parse_args()
    for config in args.config:
        out = measure(
            config,
            batches=args.batches,
            warm_batches=args.warm_batches,
            batch_size=args.batch_size,
            max_photos=args.max_photos,
            image_size=args.image_size,
        )
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
