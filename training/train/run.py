"""The training loop: fine-tune, keep the best EMA weights by validation AUC, calibrate, evaluate.

Usage: ``authlens train --config configs/synthetic.yaml [--set train.epochs=3] [--resume]``;
several processes: ``torchrun --nproc_per_node 2 -m authlens train --config ...`` (gloo, CPU).

A run writes ``OUTPUT_DIR/NAME/``: ``config.yaml`` (resolved), ``split.csv`` (the split used),
``last.pt`` (every epoch; with optimizer, scheduler, EMA and RNG state for an exact ``--resume``),
``best.pt`` (EMA weights of the best validation AUC, with calibration and OOD reference once
training ends), ``history.json``, and with ``evaluate.after_training`` the evaluation report.

Flat like torchvision's reference script: :func:`train_one_epoch`, :func:`validate`, :func:`run`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader

from model.bundle import Decision
from model.configio import config_hash, dump_config
from model.decision import sigmoid
from model.flags import FLAG_NAMES
from model.imaging import sharpness
from model.logs import log_event
from model.network import AuthLensNet, NetworkSpec
from training.checkpoint import (
    Checkpoint,
    CheckpointError,
    InputSettings,
    git_commit,
    load_checkpoint,
    save_checkpoint,
)
from training.config import TrainConfig
from training.data.augment import Augmenter
from training.data.dataset import (
    SPLIT_FILE,
    EpochSampler,
    Splits,
    TrainDataset,
    class_counts,
    decode_all,
    flag_target,
    label_of,
    make_splits,
    read_image,
    save_split,
)
from training.metrics import flag_macro_f1, reliability, roc_auc
from training.train.calibration import (
    calibrated_probability,
    fit_calibration,
    fit_min_sharpness,
    fit_ood,
)
from training.train.inference import Outputs, load_inputs, normalize, predict
from training.train.runtime import tune_cpu
from training.train.tracking import Tracker

log = logging.getLogger(__name__)

BEST = "best.pt"
LAST = "last.pt"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.json"


class RunError(ValueError):
    """A run that must not start (existing run directory, mismatched resume ...)."""


# ----------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group (gloo) when launched by torchrun; otherwise run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def network_spec(cfg: TrainConfig) -> NetworkSpec:
    """The architecture a config asks for."""
    return NetworkSpec(
        backbone=cfg.model.backbone,
        pretrained=cfg.model.pretrained,
        num_flags=len(FLAG_NAMES),
        drop_rate=cfg.model.drop_rate,
        pool=cfg.model.pool,
        pool_r=cfg.model.pool_r,
        freeze=tuple(cfg.model.freeze),
    )


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
    if got.num_flags != want.num_flags:
        problems.append(f"{got.num_flags} flags (this authlens: {want.num_flags})")
    if ckpt.input.image_size != cfg.data.image_size:
        problems.append(f"image size {ckpt.input.image_size} (config: {cfg.data.image_size})")
    if problems:
        raise CheckpointError(
            f"{path} is from another architecture: {'; '.join(problems)}. Resume with the config saved "
            f"next to it ({path.parent / CONFIG_FILE}), or start a new run with another run.name."
        )


def threads_for(cfg: TrainConfig, d: Dist) -> int:
    if cfg.train.threads:
        return cfg.train.threads
    return max(1, (os.cpu_count() or 1) // d.world)


# ----------------------------------------------------------------------------- losses


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-class loss weights ``N / (2 * n_c)``: both classes carry half the total weight."""
    n = len(labels)
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return torch.tensor(n / (2.0 * np.maximum(counts, 1.0)), dtype=torch.float32)


def losses(
    out: dict[str, torch.Tensor],
    labels: torch.Tensor,
    flags: torch.Tensor,
    has_flags: torch.Tensor,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Authenticity and flag losses.

    The authenticity loss is binary cross-entropy, class-weighted when ``weights`` (2,) is given.
    The flag loss is multi-label binary cross-entropy averaged over photos that have flag labels
    (``has_flags == 1``); photos without (``flags is None`` in the manifest) contribute nothing.
    """
    sample_w = None if weights is None else weights[labels.long()]
    auth = F.binary_cross_entropy_with_logits(out["counterfeit_logit"], labels, weight=sample_w)
    per_photo = F.binary_cross_entropy_with_logits(out["flag_logits"], flags, reduction="none").mean(1)
    labelled = has_flags.sum()
    flag = (per_photo * has_flags).sum() / labelled.clamp(min=1.0)
    return auth, flag


def dense_targets(
    boxes: torch.Tensor, map_size: tuple[int, int], input_size: tuple[int, int], num_flags: int
):
    """Per-cell targets for the maps from tell boxes.

    A cell's target for a box is the share of the smaller of the two (cell or box) that they
    have in common: 1 for a cell inside a large box and for the cell holding a small one, a
    fraction along a box's edge. Several boxes take the maximum.

    Args:
        boxes: ``(B, K, 5)`` rows ``(flag index, x0, y0, x1, y1)`` in input pixels; index -1 pads.
        map_size: ``(h, w)`` of the maps.
        input_size: ``(H, W)`` of the model input.
        num_flags: ``F``.

    Returns:
        ``(B, h, w)`` targets for the counterfeit map (any tell) and ``(B, F, h, w)`` per flag.
    """
    h, w = map_size
    ch, cw = input_size[0] / h, input_size[1] / w
    flag = boxes[..., 0].long()  # (B, K)
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(1, 5))  # (B, K, 1) each
    cx0 = torch.arange(w, dtype=boxes.dtype) * cw  # (w,)
    cy0 = torch.arange(h, dtype=boxes.dtype) * ch
    ox = (torch.minimum(x1, cx0 + cw) - torch.maximum(x0, cx0)).clamp(min=0)  # (B, K, w)
    oy = (torch.minimum(y1, cy0 + ch) - torch.maximum(y0, cy0)).clamp(min=0)  # (B, K, h)
    overlap = oy[..., :, None] * ox[..., None, :]  # (B, K, h, w)
    box_area = ((x1 - x0).clamp(min=1e-3) * (y1 - y0).clamp(min=1e-3))[..., None]  # (B, K, 1, 1)
    share = (overlap / torch.clamp(box_area, max=ch * cw)).clamp(max=1.0)
    share = share * (flag >= 0)[..., None, None]
    onehot = F.one_hot(flag.clamp(min=0), num_flags).to(share.dtype) * (flag >= 0)[..., None]  # (B, K, F)
    per_flag = (share[:, :, None] * onehot[..., None, None]).amax(dim=1)  # (B, F, h, w)
    return share.amax(dim=1), per_flag


def dense_loss(
    out: dict[str, torch.Tensor],
    boxes: torch.Tensor,
    dense: torch.Tensor,
    input_size: tuple[int, int],
    pos_weight: float = 1.0,
) -> torch.Tensor:
    """Cell-wise binary cross-entropy of the counterfeit and flag maps on photos with ``dense == 1``.

    A tell covers one to four of the 49 cells of a 224 px photo; ``pos_weight`` counts its cells
    that many times, so the clean cells around it do not drown it out.
    """
    if not bool(dense.any()):
        return out["cam"].sum() * 0.0
    sel = dense > 0
    cam, maps = out["cam"][sel], out["flag_maps"][sel]
    t_cam, t_flags = dense_targets(boxes[sel], tuple(cam.shape[-2:]), input_size, maps.shape[1])
    w = torch.tensor(pos_weight, dtype=cam.dtype)
    cam_loss = F.binary_cross_entropy_with_logits(cam, t_cam, pos_weight=w)
    return cam_loss + F.binary_cross_entropy_with_logits(maps, t_flags, pos_weight=w)


# ----------------------------------------------------------------------------- optimisation


def build_optimizer(net: AuthLensNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (timm's grouping); heads at ``head_lr_scale``."""
    o = cfg.train
    heads = nn.ModuleDict({"auth": net.auth_head, "flag": net.flag_head})
    groups = []
    for module, scale in ((net.backbone, 1.0), (heads, o.head_lr_scale)):
        for g in param_groups_weight_decay(module, weight_decay=o.weight_decay):
            groups.append({**g, "lr": o.lr * scale})
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> CosineLRScheduler:
    """Cosine decay per step with linear warm-up (timm)."""
    o = cfg.train
    total = max(1, o.epochs * steps_per_epoch)
    warmup = min(round(o.warmup_epochs * steps_per_epoch), total - 1)
    return CosineLRScheduler(
        opt,
        t_initial=total,
        lr_min=o.lr * o.min_lr_ratio,
        warmup_t=warmup,
        warmup_lr_init=o.lr * 0.01,
        warmup_prefix=False,
        t_in_epochs=False,
    )


# ----------------------------------------------------------------------------- epoch loops


@dataclass
class EpochStats:
    loss: float
    auth_loss: float
    flag_loss: float
    dense_loss: float
    images: int
    seconds: float
    lr: float

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def train_one_epoch(
    model: nn.Module,
    net: AuthLensNet,
    ema: ModelEmaV3 | None,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: CosineLRScheduler,
    cfg: TrainConfig,
    *,
    step: int,
    weights: torch.Tensor | None,
    world: int,
    progress: Any = None,
) -> tuple[EpochStats, int]:
    """One pass over the training loader; returns the statistics and the new global step.

    ``model`` is what is called (``net`` itself or its DDP wrapper); ``net`` is the bare network.
    """
    model.train()
    total = auth_sum = flag_sum = dense_sum = 0.0
    batches = images = 0
    start = time.perf_counter()
    for pixels, labels, flags, has_flags, boxes, dense, _ in loader:
        x = normalize(pixels, net.mean, net.std, channels_last=cfg.train.channels_last)
        labels = labels.float()
        has_flags = has_flags.float()
        out = model(x)
        auth, flag = losses(out, labels, flags, has_flags, weights)
        loss = auth + cfg.train.flag_loss_weight * flag
        if cfg.train.dense_loss_weight > 0:
            cells = dense_loss(
                out, boxes, dense.float(), tuple(pixels.shape[1:3]), cfg.train.dense_pos_weight
            )
            loss = loss + cfg.train.dense_loss_weight * cells
            dense_sum += cells.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
        optimizer.step()
        step += 1
        scheduler.step_update(step)
        if ema is not None:
            ema.update(net, step=step)
        loss_value = loss.item()
        total += loss_value
        auth_sum += auth.item()
        flag_sum += flag.item()
        batches += 1
        images += len(pixels) * world
        if progress is not None:
            progress(len(pixels) * world, loss_value, images / (time.perf_counter() - start))
    seconds = time.perf_counter() - start
    n = max(batches, 1)
    lr = optimizer.param_groups[0]["lr"]
    return EpochStats(total / n, auth_sum / n, flag_sum / n, dense_sum / n, images, seconds, lr), step


def gather_outputs(part: Outputs, index: np.ndarray, n: int, d: Dist) -> Outputs:
    """Reassemble outputs computed on ``index`` shards by each rank into input order."""
    if d.world == 1:
        return part
    pieces: list[Any] = [None] * d.world
    dist.all_gather_object(pieces, (index, part))
    logits = np.zeros(n, np.float32)
    flags = np.zeros((n, part.flag_logits.shape[1]), np.float32)
    embs = np.zeros((n, part.embeddings.shape[1]), np.float32)
    for idx, out in pieces:
        logits[idx], flags[idx], embs[idx] = out.logits, out.flag_logits, out.embeddings
    return Outputs(logits, flags, embs)


def validate(
    net: nn.Module, inputs: torch.Tensor, labels: np.ndarray, cfg: TrainConfig, d: Dist, *, mean, std
) -> tuple[dict[str, float], Outputs]:
    """Validation AUC and loss of ``net`` (sharded across ranks, gathered on all)."""
    index = np.arange(d.rank, len(inputs), d.world)
    part = predict(
        net,
        inputs[index],
        mean=mean,
        std=std,
        batch_size=cfg.train.eval_batch_size,
        channels_last=cfg.train.channels_last,
    )
    out = gather_outputs(part, index, len(inputs), d)
    y = torch.from_numpy(labels.astype(np.float32))
    loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(out.logits), y))
    return {"val_auc": roc_auc(labels, out.logits), "val_loss": loss}, out


# ----------------------------------------------------------------------------- checkpoints


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


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": repr(random.getstate()),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    import ast

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(ast.literal_eval(state["python"]))


def make_checkpoint(
    net: AuthLensNet,
    state_dict: dict[str, torch.Tensor],
    cfg: TrainConfig,
    *,
    data: dict[str, Any],
    metrics: dict[str, Any],
    epoch: int,
    decision: Decision | None = None,
    ood=None,
    train_state: dict[str, Any] | None = None,
) -> Checkpoint:
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


# ----------------------------------------------------------------------------- progress


@contextmanager
def progress_bar(enabled: bool, total_epochs: int) -> Iterator[Any]:
    """A rich progress bar (stderr) with loss and throughput; ``None`` when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from model.cliutil import err_console

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        bar.total_epochs = total_epochs  # type: ignore[attr-defined]
        yield bar


# ----------------------------------------------------------------------------- the run


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


def prepare_data(cfg: TrainConfig) -> tuple[Splits, dict[str, Any]]:
    """Load the manifest and split it; everything that can be wrong with the data fails here.

    Raises:
        DataError / ManifestError: with a message naming the problem and the fix.
    """
    from training.data.manifest import load_manifest, manifest_hash

    records = load_manifest(cfg.data.manifest)
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
    if resume is None or resume is False:
        return None
    path = run_dir / LAST if resume is True else Path(resume)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise RunError(f"Nothing to resume: {path} does not exist. Start without --resume.")
    return path


def run(
    cfg: TrainConfig,
    *,
    resume: str | Path | bool | None = None,
    force: bool = False,
    stop_after: int | None = None,
    show_progress: bool = True,
) -> RunResult:
    """Train, calibrate and (by default) evaluate one run.

    Args:
        cfg: The resolved configuration.
        resume: ``True`` to continue ``OUTPUT_DIR/NAME/last.pt``, or a checkpoint path.
        force: Start afresh even when the run directory already holds a checkpoint.
        stop_after: Stop after this many epochs of this call as if interrupted (no calibration).
        show_progress: Show rich progress bars.

    Raises:
        RunError, DataError, CheckpointError, ManifestError, ConfigError: before training starts.
    """
    wall_start = time.perf_counter()
    tune_cpu()
    d = init_distributed()
    torch.set_num_threads(threads_for(cfg, d))
    run_dir = Path(cfg.run.output_dir) / cfg.run.name
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

    splits, data_info = prepare_data(cfg)
    resumed: Checkpoint | None = None
    if resume_path is not None:
        resumed = load_checkpoint(resume_path)
        check_compatible(resumed, cfg, resume_path)
        if not resumed.train_state:
            raise CheckpointError(
                f"{resume_path} has no training state (a best.pt?); resume from {resume_path.parent / LAST}."
            )
        if resumed.data.get("manifest_hash") != data_info["manifest_hash"]:
            raise CheckpointError(
                f"{resume_path} was trained on another dataset (manifest hash "
                f"{str(resumed.data.get('manifest_hash'))[:12]}, now {data_info['manifest_hash'][:12]}); "
                "resume with the same manifest or start a new run."
            )

    seed_everything(cfg.run.seed)
    net = AuthLensNet(network_spec(cfg))  # loads pretrained weights: fails here if missing
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)

    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")
        save_split(splits, run_dir / SPLIT_FILE)
    data_info["split_manifest"] = str((run_dir / SPLIT_FILE).resolve())

    # data
    augmenter = Augmenter(cfg.augment, image_size=cfg.data.image_size, resize=cfg.data.resize)
    workers = cfg.data.num_workers
    cache = None
    if cfg.data.cache_decoded:
        first = read_image(splits.train[0], draft_size=cfg.data.draft_size).pixels
        need_gb = first.nbytes * len(splits.train) / 2**30
        if need_gb <= cfg.data.cache_max_gb:
            cache = decode_all(splits.train, draft_size=cfg.data.draft_size, threads=threads_for(cfg, d))
        elif d.main:
            log_event(log, "decode_cache_skipped", need_gb=round(need_gb, 2), limit_gb=cfg.data.cache_max_gb)
    train_ds = TrainDataset(
        splits.train, augmenter=augmenter, draft_size=cfg.data.draft_size, seed=cfg.run.seed, cache=cache
    )
    sampler = EpochSampler(len(train_ds), seed=cfg.run.seed, rank=d.rank, world=d.world)
    per_rank_batch = cfg.train.batch_size // d.world
    from training.train.inference import worker_init

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
    steps_per_epoch = len(loader)
    val_labels = np.array([label_of(r) for r in splits.val])
    val_inputs = load_inputs(
        splits.val,
        image_size=cfg.data.image_size,
        resize=cfg.data.resize,
        draft_size=cfg.data.draft_size,
        workers=min(workers, 2),
    )

    # optimisation
    optimizer = build_optimizer(net, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    ema = ModelEmaV3(net, decay=cfg.train.ema_decay, use_warmup=True) if cfg.train.ema else None
    weights = class_weights(train_ds.labels) if cfg.train.class_balance else None
    model: nn.Module = net
    if d.world > 1:
        model = nn.parallel.DistributedDataParallel(net)

    state = RunState()
    if resumed is not None:
        ts = resumed.train_state or {}
        net.load_state_dict(ts["model"])
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        if ema is not None and ts.get("ema") is not None:
            ema.module.load_state_dict(ts["ema"])
        state = RunState(**ts["run_state"])
        _set_rng_state(ts["rng"])
        scheduler.step_update(state.step)

    tracker = Tracker.create(cfg, enabled=d.main and cfg.tracking.mlflow, run_id=state.mlflow_run_id)
    state.mlflow_run_id = tracker.run_id
    if d.main and resumed is None:
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
            resumed_from=state.epoch if resumed is not None else None,
        )

    eval_net: nn.Module = ema.module if ema is not None else net
    epochs_this_call = 0
    best_path, last_path = run_dir / BEST, run_dir / LAST
    with progress_bar(show_progress and d.main, cfg.train.epochs) as bar:
        overall = (
            bar.add_task("training", total=cfg.train.epochs, completed=state.epoch, info="")
            if bar is not None
            else None
        )
        for epoch in range(state.epoch, cfg.train.epochs):
            if stop_after is not None and epochs_this_call >= stop_after:
                break
            sampler.set_epoch(epoch)
            task = (
                bar.add_task(f"epoch {epoch + 1}/{cfg.train.epochs}", total=len(sampler) * d.world, info="")
                if bar is not None
                else None
            )

            def advance(n: int, loss: float, ips: float, task=task) -> None:
                if bar is not None:
                    bar.update(task, advance=n, info=f"loss {loss:.3f} {ips:.0f} img/s")

            stats, state.step = train_one_epoch(
                model,
                net,
                ema,
                loader,
                optimizer,
                scheduler,
                cfg,
                step=state.step,
                weights=weights,
                world=d.world,
                progress=advance,
            )
            val, _ = validate(eval_net, val_inputs, val_labels, cfg, d, mean=net.mean, std=net.std)
            state.epoch = epoch + 1
            state.train_seconds += stats.seconds
            row = {
                "epoch": state.epoch,
                "train_loss": stats.loss,
                "train_auth_loss": stats.auth_loss,
                "train_flag_loss": stats.flag_loss,
                "train_dense_loss": stats.dense_loss,
                "lr": stats.lr,
                "train_images_per_s": stats.images_per_s,
                "epoch_seconds": stats.seconds,
                **val,
            }
            state.history.append(row)
            improved = val["val_auc"] > state.best_auc
            if improved:
                state.best_auc, state.best_epoch = val["val_auc"], state.epoch
            if d.main:
                if improved:
                    save_checkpoint(
                        best_path,
                        make_checkpoint(
                            net,
                            eval_net.state_dict(),
                            cfg,
                            data=data_info,
                            metrics={"epoch": state.epoch, **val},
                            epoch=state.epoch,
                        ),
                    )
                train_state = {
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "ema": None if ema is None else ema.module.state_dict(),
                    "run_state": asdict(state),
                    "rng": _rng_state(),
                }
                save_checkpoint(
                    last_path,
                    make_checkpoint(
                        net,
                        eval_net.state_dict(),
                        cfg,
                        data=data_info,
                        metrics={"epoch": state.epoch, **val},
                        epoch=state.epoch,
                        train_state=train_state,
                    ),
                )
                (run_dir / HISTORY_FILE).write_text(json.dumps(state.history, indent=2), encoding="utf-8")
                tracker.log_metrics(row, step=state.epoch)
                log_event(log, "epoch_end", **{k: round(v, 5) for k, v in row.items()}, best=improved)
                if bar is not None:
                    bar.update(task, visible=False)
                    bar.update(
                        overall,
                        advance=1,
                        info=f"val AUC {val['val_auc']:.4f} (best {state.best_auc:.4f} @ {state.best_epoch})",
                    )
            epochs_this_call += 1
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    mean_ips = (
        sum(r["train_images_per_s"] * r["epoch_seconds"] for r in state.history)
        / max(sum(r["epoch_seconds"] for r in state.history), 1e-9)
        if state.history
        else 0.0
    )
    result = RunResult(
        run_dir=run_dir,
        best=best_path,
        last=last_path,
        report=None,
        best_auc=state.best_auc,
        best_epoch=state.best_epoch,
        train_images_per_s=mean_ips,
        wall_seconds=0.0,
        main=d.main,
    )
    if not d.main or state.epoch < cfg.train.epochs:
        tracker.end(status="KILLED" if state.epoch < cfg.train.epochs else "FINISHED")
        result.wall_seconds = time.perf_counter() - wall_start
        return result

    # ------------------------------------------------------------------ calibrate best.pt
    log_event(
        log,
        "calibrating",
        stage=f"temperature and thresholds on {len(val_labels)} validation photos, "
        f"OOD reference on {len(splits.train)} training photos",
    )
    best = load_checkpoint(best_path)
    best_net = best.build_network()
    if cfg.train.channels_last:
        best_net = best_net.to(memory_format=torch.channels_last)
    val_out = predict(
        best_net,
        val_inputs,
        mean=best_net.mean,
        std=best_net.std,
        batch_size=cfg.train.eval_batch_size,
        channels_last=cfg.train.channels_last,
    )
    flag_t = np.stack([flag_target(r)[0] for r in splits.val])
    flag_m = np.array([flag_target(r)[1] for r in splits.val])
    calibration = fit_calibration(
        val_out.logits, val_labels, sigmoid(val_out.flag_logits), flag_t, flag_m, cfg.calibration
    )
    train_inputs = load_inputs(
        splits.train,
        image_size=cfg.data.image_size,
        resize=cfg.data.resize,
        draft_size=cfg.data.draft_size,
        workers=min(workers, 2),
    )
    train_out = predict(
        best_net,
        train_inputs,
        mean=best_net.mean,
        std=best_net.std,
        batch_size=cfg.train.eval_batch_size,
        channels_last=cfg.train.channels_last,
    )
    if cfg.calibration.min_sharpness is None:
        sharp = np.array([sharpness(x) for x in train_inputs.numpy()])
        min_sharpness = fit_min_sharpness(sharp, cfg.calibration.sharpness_quantile)
        calibration = calibration.model_copy(update={"min_sharpness": min_sharpness})
    del train_inputs
    ood = fit_ood(
        train_out.embeddings, train_ds.labels, cfg.calibration.ood_quantile, held_out=val_out.embeddings
    )
    p_val = calibrated_probability(val_out.logits, calibration.temperature)
    val_metrics = {
        "epoch": best.epoch,
        "val_auc": roc_auc(val_labels, val_out.logits),
        "val_ece_uncalibrated": reliability(
            calibrated_probability(val_out.logits, 1.0), val_labels, cfg.evaluate.ece_bins
        ).ece,
        "val_ece": reliability(p_val, val_labels, cfg.evaluate.ece_bins).ece,
        "val_flag_macro_f1": flag_macro_f1(
            sigmoid(val_out.flag_logits), flag_t, flag_m, calibration.flag_thresholds
        ),
        "temperature": calibration.temperature,
        "train_images_per_s": mean_ips,
        "train_seconds": state.train_seconds,
        "config_hash": config_hash(cfg),
    }
    best.decision = calibration
    best.ood = ood
    best.metrics = val_metrics
    save_checkpoint(best_path, best)
    tracker.log_metrics({f"best_{k}": v for k, v in val_metrics.items()}, step=state.epoch)
    log_event(
        log,
        "calibrated",
        temperature=round(calibration.temperature, 4),
        counterfeit_threshold=round(calibration.counterfeit_threshold, 4),
        genuine_threshold=round(calibration.genuine_threshold, 4),
        ood_threshold=round(ood.threshold, 3),
        min_sharpness=round(calibration.min_sharpness, 2),
    )

    if cfg.evaluate.after_training:
        from training.evaluate.run import evaluate_checkpoint

        report = evaluate_checkpoint(
            best_path, split=cfg.evaluate.split, out_dir=run_dir, show_progress=show_progress, tracker=tracker
        )
        result.report = run_dir / "report.json"
        result.extras["summary"] = report.get("summary", {})
    result.wall_seconds = time.perf_counter() - wall_start
    tracker.log_metrics({"wall_seconds": result.wall_seconds}, step=state.epoch)
    tracker.end()
    log_event(
        log,
        "train_done",
        best=str(best_path),
        best_epoch=state.best_epoch,
        best_val_auc=round(state.best_auc, 5),
        train_images_per_s=round(mean_ips, 1),
        wall_seconds=round(result.wall_seconds, 1),
    )
    return result
