"""One epoch of training and one pass of validation, as torchvision's ``train_one_epoch`` and ``evaluate``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from model.network import AuthLensNet
from training.config import TrainConfig
from training.metrics import roc_auc
from training.train.inference import Outputs, normalize, predict_for
from training.train.losses import dense_loss, losses
from training.train.optim import Learner
from training.train.startup import Dist


@dataclass
class EpochStats:
    """Mean losses of an epoch's batches, its throughput and the learning rate it ended on."""

    loss: float
    auth_loss: float
    flag_loss: float
    dense_loss: float
    images: int  # over all processes
    seconds: float
    lr: float

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def train_one_epoch(
    learner: Learner,
    loader: DataLoader,
    cfg: TrainConfig,
    *,
    step: int,
    weights: torch.Tensor | None,
    world: int,
    progress: Callable[[int, float, float], None] | None = None,
) -> tuple[EpochStats, int]:
    """One pass over the training loader.

    Args:
        learner: The network, optimizer, schedule (stepped per batch) and EMA (updated per batch).
        loader: This process's shard of the training batches.
        cfg: The run's configuration (loss weights, gradient clipping, memory format).
        step: Global step before this epoch.
        weights: ``(2,)`` class weights for the authenticity loss, or ``None``.
        world: Number of processes (each batch counts ``len(batch) * world`` images).
        progress: Called after each batch with ``(images, loss, images per second)``.

    Returns:
        The epoch's statistics and the new global step.
    """
    net, model, optimizer = learner.net, learner.model, learner.optimizer
    model.train()
    total = auth_sum = flag_sum = dense_sum = 0.0
    batches = images = 0
    start = time.perf_counter()
    for pixels, labels, flags, has_flags, boxes, dense, _ in loader:  # pixels (B, H, W, 3) uint8
        x = normalize(pixels, net.mean, net.std, channels_last=cfg.train.channels_last)  # (B, 3, H, W)
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
        learner.scheduler.step_update(step)
        if learner.ema is not None:
            learner.ema.update(net, step=step)
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
    """Reassemble outputs computed on ``index`` shards by each rank into input order.

    Args:
        part: This rank's outputs, one row per entry of ``index``.
        index: ``(n_rank,)`` input positions this rank computed.
        n: Number of inputs over all ranks.
        d: This process's place in the run.

    Returns:
        ``n`` rows in input order, on every rank.
    """
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
    net: AuthLensNet, inputs: torch.Tensor, labels: np.ndarray, cfg: TrainConfig, d: Dist
) -> tuple[dict[str, float], Outputs]:
    """Validation AUC and loss of ``net`` (sharded across ranks, gathered on all).

    Args:
        net: The weights to validate (the EMA copy when there is one).
        inputs: ``(N, H, W, 3)`` uint8 validation inputs.
        labels: ``(N,)`` 0/1, 1 = counterfeit.
        cfg: The run's configuration (evaluation batch size and memory format).
        d: This process's place in the run; each rank predicts every ``world``-th photo.

    Returns:
        ``{"val_auc", "val_loss"}`` and the outputs for all ``N`` photos.
    """
    index = np.arange(d.rank, len(inputs), d.world)
    out = gather_outputs(predict_for(net, inputs[index], cfg), index, len(inputs), d)
    y = torch.from_numpy(labels.astype(np.float32))
    loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(out.logits), y))
    return {"val_auc": roc_auc(labels, out.logits), "val_loss": loss}, out
