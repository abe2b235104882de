"""Batched forward passes over prepared model inputs (shared by training, calibration, evaluation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from training.data.dataset import load_inputs

if TYPE_CHECKING:
    from model.network import AuthLensNet
    from training.config import TrainConfig


def normalize(
    pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float], *, channels_last: bool
) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 to normalised ``(B, 3, H, W)`` float, exactly as the serving graph does."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    x = (pixels.permute(0, 3, 1, 2).float() - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def load_inputs_for(records: Sequence, cfg: TrainConfig) -> torch.Tensor:
    """:func:`load_inputs` with a run's image settings and at most two loader workers."""
    return load_inputs(
        records,
        image_size=cfg.data.image_size,
        resize=cfg.data.resize,
        draft_size=cfg.data.draft_size,
        workers=min(cfg.data.num_workers, 2),
    )


@dataclass
class Outputs:
    """Network outputs for a set of photos, as numpy arrays in input order."""

    logits: np.ndarray  # (N,) uncalibrated counterfeit logits
    flag_logits: np.ndarray  # (N, F)
    embeddings: np.ndarray  # (N, D)
    cams: np.ndarray | None = None  # (N, h, w)

    def subset(self, index: np.ndarray) -> Outputs:
        return Outputs(
            self.logits[index],
            self.flag_logits[index],
            self.embeddings[index],
            None if self.cams is None else self.cams[index],
        )


@torch.no_grad()
def predict(
    net: nn.Module,
    inputs: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    channels_last: bool = True,
    with_cams: bool = False,
) -> Outputs:
    """Run ``net`` (an :class:`model.network.AuthLensNet`, eval mode) over ``(N, H, W, 3)`` uint8 inputs."""
    was_training = net.training
    net.eval()
    logits, flags, embs, cams = [], [], [], []
    for start in range(0, len(inputs), batch_size):
        x = normalize(inputs[start : start + batch_size], mean, std, channels_last=channels_last)
        out = net(x)
        logits.append(out["counterfeit_logit"].float())
        flags.append(out["flag_logits"].float())
        embs.append(out["embedding"].float())
        if with_cams:
            cams.append(out["cam"].float())
    net.train(was_training)
    if not logits:
        raise ValueError("predict() got no inputs.")
    return Outputs(
        logits=torch.cat(logits).numpy(),
        flag_logits=torch.cat(flags).numpy(),
        embeddings=torch.cat(embs).numpy(),
        cams=torch.cat(cams).numpy() if with_cams else None,
    )


def predict_for(net: AuthLensNet, inputs: torch.Tensor, cfg: TrainConfig) -> Outputs:
    """:func:`predict` with ``net``'s normalisation and a run's evaluation batch size and memory format."""
    return predict(
        net,
        inputs,
        mean=net.mean,
        std=net.std,
        batch_size=cfg.train.eval_batch_size,
        channels_last=cfg.train.channels_last,
    )
