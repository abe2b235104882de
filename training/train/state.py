"""What a run keeps between epochs and between calls: the files it writes, ``RunState``, exact resume.

``last.pt`` carries, besides the weights, the optimizer, schedule, EMA and RNG state and the
:class:`RunState`, so that ``--resume`` continues bit for bit where the last finished epoch left off.
A run may resume on another number of processes (a restart on fewer or more nodes): epochs are
then cut into another number of steps, and the run continues at the same point of its schedule.
"""

from __future__ import annotations

import ast
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from model.bundle import Decision
from model.logs import log_event
from model.network import AuthLensNet
from training.checkpoint import (
    Checkpoint,
    CheckpointError,
    InputSettings,
    OODReference,
    git_commit,
    load_checkpoint,
    save_checkpoint,
)
from training.config import TrainConfig
from training.train.optim import Learner
from training.train.startup import Dist, network_spec

if TYPE_CHECKING:
    from training.train.loop import EpochStats

BEST = "best.pt"
LAST = "last.pt"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.json"

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """What ``last.pt`` carries besides weights, to continue exactly."""

    epoch: int = 0  # epochs completed
    step: int = 0
    best_auc: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    train_seconds: float = 0.0
    world: int = 1  # processes that ran the last epoch (checkpoints from before it: 1)

    def record(
        self, stats: EpochStats, val: dict[str, float], *, keep_last: bool = False
    ) -> tuple[dict[str, float], bool]:
        """Count a finished epoch.

        Args:
            stats: The epoch's training figures.
            val: Its validation figures (empty when the run has no validation photos).
            keep_last: Every epoch replaces ``best.pt`` (``train.select: last``, cross-fitting,
                or no validation photos to choose by).

        Returns:
            Its row of ``history.json``, and whether its weights become ``best.pt``.
        """
        self.epoch += 1
        self.train_seconds += stats.seconds
        row = {
            "epoch": self.epoch,
            "train_loss": stats.loss,
            "train_auth_loss": stats.auth_loss,
            "train_flag_loss": stats.flag_loss,
            "train_dense_loss": stats.dense_loss,
            "lr": stats.lr,
            "train_images_per_s": stats.images_per_s,
            "epoch_seconds": stats.seconds,
            **val,
        }
        self.history.append(row)
        auc = val.get("val_auc", float("nan"))
        improved = keep_last or not val or auc > self.best_auc
        if improved:
            self.best_auc, self.best_epoch = auc, self.epoch
        return row, improved

    @property
    def images_per_s(self) -> float:
        """Training throughput over every epoch so far, each weighted by its duration (0 before any)."""
        if not self.history:
            return 0.0
        return sum(r["train_images_per_s"] * r["epoch_seconds"] for r in self.history) / max(
            sum(r["epoch_seconds"] for r in self.history), 1e-9
        )


# ----------------------------------------------------------------------------- resume


def check_compatible(ckpt: Checkpoint, cfg: TrainConfig, path: Path) -> None:
    """Refuse to resume or evaluate a checkpoint whose architecture or input differs from ``cfg``.

    Raises:
        CheckpointError: naming both architectures and how to proceed.
    """
    want = network_spec(cfg)
    got = ckpt.spec
    problems = []
    if got.backbone != want.backbone:
        problems.append(f"backbone {got.backbone!r} (config: {want.backbone!r})")
    if got.freeze != want.freeze:
        problems.append(f"frozen parts {list(got.freeze)} (config: {list(want.freeze)})")
    if (got.pool, got.pool_r) != (want.pool, want.pool_r):
        problems.append(f"pooling {got.pool} r={got.pool_r} (config: {want.pool} r={want.pool_r})")
    if got.ood_features != want.ood_features:
        problems.append(f"OOD features {got.ood_features} (config: {want.ood_features})")
    if got.num_flags != want.num_flags:
        problems.append(f"{got.num_flags} flags (this authlens: {want.num_flags})")
    if ckpt.input.image_size != cfg.data.image_size:
        problems.append(f"image size {ckpt.input.image_size} (config: {cfg.data.image_size})")
    if problems:
        raise CheckpointError(
            f"{path} is from another architecture: {'; '.join(problems)}. Resume with the config saved "
            f"next to it ({path.parent / CONFIG_FILE}), or start a new run with another run.name."
        )


def load_resumable(path: Path, cfg: TrainConfig, manifest_hash: str) -> Checkpoint:
    """Load a ``last.pt`` to continue, after checking it fits ``cfg`` and the dataset.

    Args:
        path: The checkpoint to resume from.
        cfg: The run's configuration.
        manifest_hash: Hash of the manifest this run reads.

    Raises:
        CheckpointError: another architecture, no training state (a ``best.pt``), or another dataset.
    """
    resumed = load_checkpoint(path)
    check_compatible(resumed, cfg, path)
    if not resumed.train_state:
        raise CheckpointError(f"{path} has no training state (a best.pt?); resume from {path.parent / LAST}.")
    if resumed.data.get("manifest_hash") != manifest_hash:
        raise CheckpointError(
            f"{path} was trained on another dataset (manifest hash "
            f"{str(resumed.data.get('manifest_hash'))[:12]}, now {manifest_hash[:12]}); "
            "resume with the same manifest or start a new run."
        )
    return resumed


def rng_state() -> dict[str, Any]:
    """Torch's, NumPy's and Python's global generator states, in a form ``torch.load`` reads safely."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": repr(random.getstate()),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(ast.literal_eval(state["python"]))


def resume_state(learner: Learner, state: RunState) -> dict[str, Any]:
    """Everything besides the kept weights that ``--resume`` needs: ``last.pt``'s ``train_state``."""
    return {
        "model": learner.net.state_dict(),
        "optimizer": learner.optimizer.state_dict(),
        "scheduler": learner.scheduler.state_dict(),
        "ema": None if learner.ema is None else learner.ema.module.state_dict(),
        "run_state": asdict(state),
        "rng": rng_state(),
    }


def restore_state(
    learner: Learner, train_state: dict[str, Any], *, steps_per_epoch: int | None = None, d: Dist = Dist()
) -> RunState:
    """Put :func:`resume_state`'s contents back into ``learner`` and the global generators.

    Every rank restores rank 0's generator states: the ranks are seeded alike and draw alike
    (same shapes, same operations), so one saved state serves any number of processes. The
    sampler needs no position: it is keyed by epoch, and ``last.pt`` is written between epochs.

    Args:
        learner: Built for this run (its schedule spans ``train.epochs`` x ``steps_per_epoch``).
        train_state: ``last.pt``'s ``train_state``.
        steps_per_epoch: Optimizer steps per epoch of this run. When the saved run took another
            number (it ran on another number of processes, which shard and pad the epoch
            differently), the schedule built for this run is kept and the step count becomes
            epochs done x ``steps_per_epoch``: the same point of the schedule, and the run ends
            at its end. ``None``: take the saved schedule as it is.
        d: This process's place in the run; rank 0 logs ``resume_world_changed``.

    Returns:
        The run's state after its last finished epoch.
    """
    learner.net.load_state_dict(train_state["model"])
    learner.optimizer.load_state_dict(train_state["optimizer"])
    if learner.ema is not None and train_state.get("ema") is not None:
        learner.ema.module.load_state_dict(train_state["ema"])
    state = RunState(**train_state["run_state"])
    steps = state.epoch * (steps_per_epoch or 0)
    if d.main and (state.world != d.world or (steps_per_epoch is not None and state.step != steps)):
        log_event(
            log,
            "resume_world_changed",
            world_before=state.world,
            world=d.world,
            epochs_done=state.epoch,
            step_before=state.step,
            step=steps if steps_per_epoch is not None else state.step,
        )
    if steps_per_epoch is None or state.step == steps:
        learner.scheduler.load_state_dict(train_state["scheduler"])
    else:  # the saved schedule has the saved run's length (t_initial, warm-up steps): keep this run's
        state.step = steps
    state.world = d.world
    set_rng_state(train_state["rng"])
    learner.scheduler.step_update(state.step)
    return state


# ----------------------------------------------------------------------------- checkpoints


def make_checkpoint(
    net: AuthLensNet,
    state_dict: dict[str, torch.Tensor],
    cfg: TrainConfig,
    *,
    data: dict[str, Any],
    metrics: dict[str, Any],
    epoch: int,
    decision: Decision | None = None,
    ood: OODReference | None = None,
    train_state: dict[str, Any] | None = None,
) -> Checkpoint:
    """A checkpoint of ``state_dict`` (weights for ``net``'s architecture) with the run's settings.

    Args:
        net: The network (its spec and normalisation are recorded).
        state_dict: The weights to keep (copied).
        cfg: The run's configuration (recorded, with the input settings serving needs).
        data: What the run trained on (manifest, hash, split sizes).
        metrics: Figures to record with the weights.
        epoch: Epochs completed.
        decision: Calibrated decision settings, when known.
        ood: The out-of-distribution reference, when known.
        train_state: :func:`resume_state`, for ``last.pt``.
    """
    return Checkpoint(
        spec=net.spec,
        state_dict={k: v.detach().clone().contiguous() for k, v in state_dict.items()},
        config=cfg.model_dump(mode="json"),
        input=InputSettings(
            image_size=cfg.data.image_size,
            resize=cfg.data.resize,
            draft_size=cfg.data.draft_size,
            mean=tuple(net.mean),
            std=tuple(net.std),
        ),
        decision=decision,
        ood=ood,
        data=data,
        metrics=metrics,
        epoch=epoch,
        git_commit=git_commit(Path(__file__).resolve().parents[1]),
        train_state=train_state,
    )


def save_epoch(
    run_dir: Path,
    learner: Learner,
    cfg: TrainConfig,
    state: RunState,
    val: dict[str, float],
    *,
    data: dict[str, Any],
    improved: bool,
) -> None:
    """Write an epoch's files: ``best.pt`` when it ``improved``, ``last.pt`` and ``history.json``.

    Both checkpoints hold the weights that are validated (:attr:`Learner.eval_net`); ``last.pt``
    also holds :func:`resume_state`.
    """
    metrics = {"epoch": state.epoch, **val}

    def save(path: Path, train_state: dict[str, Any] | None = None) -> None:
        ckpt = make_checkpoint(
            learner.net,
            learner.eval_net.state_dict(),
            cfg,
            data=data,
            metrics=metrics,
            epoch=state.epoch,
            train_state=train_state,
        )
        save_checkpoint(path, ckpt)

    if improved:
        save(run_dir / BEST)
    save(run_dir / LAST, resume_state(learner, state))
    (run_dir / HISTORY_FILE).write_text(json.dumps(state.history, indent=2), encoding="utf-8")
