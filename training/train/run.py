"""The training run: fine-tune, keep the best EMA weights by validation AUC, calibrate, evaluate.

Usage: ``authlens train --config configs/synthetic.yaml [--set train.epochs=3] [--resume]``;
several processes: ``torchrun --nproc_per_node 2 -m authlens train --config ...`` (gloo, CPU).

A run writes ``OUTPUT_DIR/NAME/``: ``config.yaml`` (resolved), ``split.csv`` (the split used),
``last.pt`` (every epoch; with optimizer, scheduler, EMA and RNG state for an exact ``--resume``),
``best.pt`` (EMA weights of the best validation AUC, with calibration and OOD reference once
training ends), ``history.json``, and with ``evaluate.after_training`` the evaluation report.

Read like torchvision's reference ``train.py``: :func:`run` is its ``main``; the stages live beside
it: :mod:`~training.train.startup` (processes, seeds, network), :mod:`~training.train.loaders`
(``load_data``), :mod:`~training.train.optim`, :mod:`~training.train.loop` (``train_one_epoch``,
``validate``), :mod:`~training.train.state` (checkpoints and resume) and
:mod:`~training.train.calibrate` (the end-of-training calibration).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.configio import config_hash, dump_config
from model.logs import log_event
from training.config import TrainConfig
from training.data.dataset import SPLIT_FILE, Splits, class_counts, make_splits, save_split
from training.train.calibrate import calibrate_best
from training.train.loaders import RunData, load_data
from training.train.loop import train_one_epoch, validate
from training.train.losses import class_weights
from training.train.optim import Learner, build_learner
from training.train.probe_init import init_heads_from_probe
from training.train.progress import epoch_bars
from training.train.runtime import tune_cpu
from training.train.startup import (
    Dist,
    build_network,
    finish_distributed,
    init_distributed,
    seed_everything,
    threads_for,
)
from training.train.state import (
    BEST,
    CONFIG_FILE,
    LAST,
    RunState,
    load_resumable,
    restore_state,
    save_epoch,
)
from training.train.tracking import Tracker

log = logging.getLogger(__name__)


class RunError(ValueError):
    """A run that must not start (existing run directory, mismatched resume ...)."""


@dataclass
class RunResult:
    """Where a finished run put things, and its headline figures."""

    run_dir: Path
    best: Path
    last: Path
    report: Path | None
    best_auc: float
    best_epoch: int
    train_images_per_s: float
    wall_seconds: float
    main: bool = True  # False on the other torchrun processes, which report nothing
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, run_dir: Path, state: RunState, *, main: bool) -> RunResult:
        """The files and training figures of a run whose epochs are done (before calibration)."""
        return cls(
            run_dir=run_dir,
            best=run_dir / BEST,
            last=run_dir / LAST,
            report=None,
            best_auc=state.best_auc,
            best_epoch=state.best_epoch,
            train_images_per_s=state.images_per_s,
            wall_seconds=0.0,
            main=main,
        )


# ----------------------------------------------------------------------------- before training


def prepare_data(cfg: TrainConfig, splits: Splits | None = None) -> tuple[Splits, dict[str, Any]]:
    """Load the manifest and split it (unless ``splits`` are given); data problems fail here.

    Raises:
        DataError / ManifestError: with a message naming the problem and the fix.
    """
    from training.data.manifest import load_manifests, manifest_hash

    records = load_manifests(cfg.data.manifest, cfg.data.extra_manifests)
    if splits is None:
        need_test = cfg.evaluate.after_training and cfg.evaluate.split == "test"
        splits = make_splits(records, cfg.data, need_test=need_test)
    info = {
        "manifest": str(Path(cfg.data.manifest).resolve()),
        "manifest_hash": manifest_hash(records),
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test),
        "classes": {name: class_counts(getattr(splits, name)) for name in ("train", "val", "test")},
    }
    return splits, info


def resolve_resume(resume: str | Path | bool | None, run_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``run_dir/last.pt`` for ``True``, a run folder's or a file.

    Raises:
        RunError: there is nothing at that path.
    """
    if resume is None or resume is False:
        return None
    path = run_dir / LAST if resume is True else Path(resume)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise RunError(f"Nothing to resume: {path} does not exist. Start without --resume.")
    return path


def check_can_start(
    cfg: TrainConfig, run_dir: Path, resume: str | Path | bool | None, *, force: bool, d: Dist
) -> Path | None:
    """Refuse a run that would overwrite another or cannot split its batches; returns the resume path.

    Raises:
        RunError: nothing to resume, a run already in ``run_dir`` (without ``force``), or a batch
            size the processes cannot share.
    """
    resume_path = resolve_resume(resume, run_dir)
    if resume_path is None and (run_dir / LAST).exists() and not force:
        raise RunError(
            f"{run_dir} already holds a run. Continue it with --resume, start over with --force, "
            "or choose another name with --set run.name=NAME."
        )
    if cfg.train.batch_size % d.world:
        raise RunError(
            f"train.batch_size {cfg.train.batch_size} must be divisible by the {d.world} processes."
        )
    return resume_path


def start_tracking(
    cfg: TrainConfig,
    run_dir: Path,
    data_info: dict[str, Any],
    state: RunState,
    d: Dist,
    *,
    resumed: bool,
    steps_per_epoch: int,
) -> Tracker:
    """Open (or, resuming, reopen) the MLflow run and log ``train_start``; only the main process tracks."""
    tracker = Tracker.create(cfg, enabled=d.main and cfg.tracking.mlflow, run_id=state.mlflow_run_id)
    state.mlflow_run_id = tracker.run_id
    if d.main and not resumed:
        tracker.log_params(cfg, data_info)
        tracker.log_artifact(run_dir / CONFIG_FILE)
    if d.main:
        log_event(
            log,
            "train_start",
            run_dir=str(run_dir),
            world=d.world,
            threads=torch.get_num_threads(),
            n_train=data_info["n_train"],
            n_val=data_info["n_val"],
            n_test=data_info["n_test"],
            steps_per_epoch=steps_per_epoch,
            resumed_from=state.epoch if resumed else None,
        )
    return tracker


# ----------------------------------------------------------------------------- training


def fit(
    cfg: TrainConfig,
    learner: Learner,
    data: RunData,
    state: RunState,
    tracker: Tracker,
    d: Dist,
    run_dir: Path,
    *,
    stop_after: int | None,
    show_progress: bool,
) -> None:
    """Train from ``state.epoch`` up to ``train.epochs``, validating the EMA weights after each epoch.

    The main process writes ``best.pt`` (when validation AUC improves), ``last.pt`` and
    ``history.json`` after every epoch and tracks the epoch's row.

    Args:
        cfg: The run's configuration.
        learner: Network, optimizer, schedule and EMA (restored when resuming).
        data: Training loader, validation inputs, and what they are (recorded in the checkpoints).
        state: Updated in place, epoch by epoch.
        tracker: Receives each epoch's row.
        d: This process's place in the run.
        run_dir: Where the files go.
        stop_after: Stop after this many epochs of this call, as if interrupted.
        show_progress: Show progress bars (main process only).
    """
    weights = class_weights(data.train.labels) if cfg.train.class_balance else None
    epochs = cfg.train.epochs
    end = epochs if stop_after is None else min(epochs, state.epoch + stop_after)
    with epoch_bars(show_progress and d.main, epochs, state.epoch) as bars:
        for epoch in range(state.epoch, end):
            data.sampler.set_epoch(epoch)
            bars.start_epoch(epoch, len(data.sampler) * d.world)
            stats, state.step = train_one_epoch(
                learner,
                data.loader,
                cfg,
                step=state.step,
                weights=weights,
                world=d.world,
                progress=bars.advance,
            )
            val = (
                validate(learner.eval_net, data.val_inputs, data.val_labels, cfg, d)[0]
                if data.has_val
                else {}
            )
            row, improved = state.record(stats, val, keep_last=cfg.train.select == "last")
            if d.main:
                save_epoch(run_dir, learner, cfg, state, val, data=data.info, improved=improved)
                tracker.log_metrics(row, step=state.epoch)
                log_event(log, "epoch_end", **{k: round(v, 5) for k, v in row.items()}, best=improved)
                best = f"best {state.best_auc:.4f} @ {state.best_epoch}"
                bars.end_epoch(f"val AUC {val['val_auc']:.4f} ({best})" if val else f"loss {stats.loss:.4f}")


# ----------------------------------------------------------------------------- after training


def calibrate_and_evaluate(
    result: RunResult,
    cfg: TrainConfig,
    data: RunData,
    state: RunState,
    tracker: Tracker,
    *,
    show_progress: bool,
) -> None:
    """Calibrate ``best.pt`` and, with ``evaluate.after_training``, evaluate it into ``result``."""
    extra = {
        "train_images_per_s": result.train_images_per_s,
        "train_seconds": state.train_seconds,
        "config_hash": config_hash(cfg),
    }
    calibrate_best(result.best, cfg, data, tracker, step=state.epoch, extra=extra)
    if cfg.evaluate.after_training:
        from training.evaluate.run import evaluate_checkpoint

        report = evaluate_checkpoint(
            result.best,
            split=cfg.evaluate.split,
            out_dir=result.run_dir,
            show_progress=show_progress,
            tracker=tracker,
        )
        result.report = result.run_dir / "report.json"
        result.extras["summary"] = report.get("summary", {})


# ----------------------------------------------------------------------------- the run


def run(
    cfg: TrainConfig,
    *,
    resume: str | Path | bool | None = None,
    force: bool = False,
    stop_after: int | None = None,
    show_progress: bool = True,
    splits: Splits | None = None,
    calibrate: bool = True,
) -> RunResult:
    """Train, calibrate and (by default) evaluate one run.

    With ``data.folds`` of 2 or more, this is :func:`training.train.crossfit.run_crossfit`'s job;
    ``splits`` and ``calibrate`` are how it trains each fold and the final model.

    Args:
        cfg: The resolved configuration.
        resume: ``True`` to continue ``OUTPUT_DIR/NAME/last.pt``, or a checkpoint path.
        force: Start afresh even when the run directory already holds a checkpoint.
        stop_after: Stop after this many epochs of this call as if interrupted (no calibration).
        show_progress: Show rich progress bars.
        splits: Train (and validate) on these instead of splitting the manifest.
        calibrate: Calibrate and evaluate ``best.pt`` when training ends.

    Raises:
        RunError, DataError, CheckpointError, ManifestError, ConfigError: before training starts.
    """
    wall_start = time.perf_counter()
    tune_cpu()
    d = init_distributed()
    torch.set_num_threads(threads_for(cfg, d))
    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    resume_path = check_can_start(cfg, run_dir, resume, force=force, d=d)
    splits, data_info = prepare_data(cfg, splits)
    resumed = None if resume_path is None else load_resumable(resume_path, cfg, data_info["manifest_hash"])

    # the order below fixes what the seeded generators produce: keep it for exact results and resume
    seed_everything(cfg.run.seed)
    net = build_network(cfg)  # loads pretrained weights: fails here if missing
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")
        save_split(splits, run_dir / SPLIT_FILE)
    data_info["split_manifest"] = str((run_dir / SPLIT_FILE).resolve())
    data = load_data(cfg, splits, data_info, d)
    if cfg.train.linear_probe_init and resumed is None:
        data_info["linear_probe_init"] = init_heads_from_probe(net, splits.train, cfg)
    learner = build_learner(net, cfg, len(data.loader), d)
    state = (
        RunState(world=d.world)
        if resumed is None
        else restore_state(learner, resumed.train_state or {}, steps_per_epoch=len(data.loader), d=d)
    )
    tracker = start_tracking(
        cfg, run_dir, data_info, state, d, resumed=resumed is not None, steps_per_epoch=len(data.loader)
    )

    fit(cfg, learner, data, state, tracker, d, run_dir, stop_after=stop_after, show_progress=show_progress)
    finish_distributed(d)
    result = RunResult.of(run_dir, state, main=d.main)
    if not d.main or state.epoch < cfg.train.epochs or not calibrate:  # another rank, stopped, or a fold
        tracker.end(status="KILLED" if state.epoch < cfg.train.epochs else "FINISHED")
        result.wall_seconds = time.perf_counter() - wall_start
        return result

    calibrate_and_evaluate(result, cfg, data, state, tracker, show_progress=show_progress)
    result.wall_seconds = time.perf_counter() - wall_start
    tracker.log_metrics({"wall_seconds": result.wall_seconds}, step=state.epoch)
    tracker.end()
    log_event(
        log,
        "train_done",
        best=str(result.best),
        best_epoch=state.best_epoch,
        best_val_auc=round(state.best_auc, 5),
        train_images_per_s=round(result.train_images_per_s, 1),
        wall_seconds=round(result.wall_seconds, 1),
    )
    return result
