"""Checkpoints: the hand-over from training to evaluation and export.

A checkpoint is a ``torch.save`` dict holding plain data only (tensors, numbers, strings,
lists, dicts), loaded with ``weights_only=True``. ``best.pt`` holds what export needs;
``last.pt`` adds the optimizer, scheduler, EMA and RNG states for an exact ``--resume``.

The decision settings are stored as the bundle's own :class:`model.bundle.Decision`, so a
calibrated checkpoint carries exactly what a bundle will. Format 1 (before 2026-12) stored the
same fields under ``calibration``; such checkpoints still load.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.bundle import Decision
from model.flags import FLAG_NAMES
from model.network import AuthLensNet, NetworkSpec
from model.ood import OODStats, from_arrays

FORMAT_VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why and what to do."""


@dataclass
class OODReference:
    """The out-of-distribution scorer fitted at the end of training, and its threshold."""

    stats: OODStats  # the scorer serving will run (model.ood)
    threshold: float  # scores above it are out of distribution
    quantile: float  # share of held-out in-distribution photos at or below the threshold


@dataclass
class InputSettings:
    """How photos become model input (mirrors :class:`model.bundle.InputSpec`)."""

    image_size: int
    resize: str
    draft_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class Checkpoint:
    """Everything a trained model carries besides the training state."""

    spec: NetworkSpec
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    input: InputSettings
    decision: Decision | None  # fitted on validation once training ends; None before
    ood: OODReference | None
    data: dict[str, Any]  # manifest path and hash, split sizes
    metrics: dict[str, Any]  # validation metrics at the saved epoch
    epoch: int
    git_commit: str
    train_state: dict[str, Any] | None = None  # last.pt only

    def build_network(self) -> AuthLensNet:
        """Rebuild the network (random init, no download) and load the weights, in eval mode.

        Raises:
            CheckpointError: the weights do not fit the recorded architecture.
        """
        spec = NetworkSpec(**{**asdict(self.spec), "pretrained": "none"})
        net = AuthLensNet(spec)
        net.mean, net.std = tuple(self.input.mean), tuple(self.input.std)
        try:
            net.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"Checkpoint weights do not fit backbone {spec.backbone!r} with {spec.num_flags} flags: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return net.eval()


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write atomically (temp file + rename) so an interrupted save never leaves half a file."""
    payload = {
        "format_version": FORMAT_VERSION,
        "spec": asdict(ckpt.spec),
        "state_dict": ckpt.state_dict,
        "config": ckpt.config,
        "input": asdict(ckpt.input),
        "decision": None if ckpt.decision is None else ckpt.decision.model_dump(mode="json"),
        "ood": None
        if ckpt.ood is None
        else {
            "method": ckpt.ood.stats.method,
            **{k: torch.from_numpy(np.asarray(v)) for k, v in ckpt.ood.stats.arrays().items()},
            "threshold": float(ckpt.ood.threshold),
            "quantile": float(ckpt.ood.quantile),
        },
        "data": ckpt.data,
        "metrics": ckpt.metrics,
        "epoch": ckpt.epoch,
        "git_commit": ckpt.git_commit,
        "train_state": ckpt.train_state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing file, not an authlens checkpoint, or a newer format.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"Checkpoint {p} does not exist.")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise CheckpointError(f"{p} is not a readable checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict) or "format_version" not in raw or "spec" not in raw:
        raise CheckpointError(
            f"{p} is not an authlens checkpoint (no format_version/spec); train one with authlens train."
        )
    if raw["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {raw['format_version']}, newer than this authlens ({FORMAT_VERSION})."
        )
    ood = raw.get("ood")
    return Checkpoint(
        # checkpoints from before these fields averaged their maps and scored OOD on the trained features
        spec=NetworkSpec(**{"pool": "mean", "ood_features": "finetuned", **raw["spec"]}),
        state_dict=raw["state_dict"],
        config=raw["config"],
        input=InputSettings(
            **{**raw["input"], "mean": tuple(raw["input"]["mean"]), "std": tuple(raw["input"]["std"])}
        ),
        decision=_decision(raw),
        ood=None if ood is None else _ood(ood),
        data=raw["data"],
        metrics=raw["metrics"],
        epoch=int(raw["epoch"]),
        git_commit=str(raw["git_commit"]),
        train_state=raw.get("train_state"),
    )


def _ood(raw: dict[str, Any]) -> OODReference:
    """The stored OOD reference; checkpoints before 2026-12 hold Mahalanobis arrays without a method."""
    arrays = {k: v.numpy() for k, v in raw.items() if isinstance(v, torch.Tensor)}
    return OODReference(
        stats=from_arrays(str(raw.get("method", "mahalanobis")), arrays),
        threshold=float(raw["threshold"]),
        quantile=float(raw["quantile"]),
    )


def _decision(raw: dict[str, Any]) -> Decision | None:
    """The stored decision settings; format 1 kept them as ``calibration``, filled even before calibrating."""
    if "decision" in raw:
        return None if raw["decision"] is None else Decision.model_validate(raw["decision"])
    if raw.get("ood") is None:  # format 1, not calibrated: its calibration held placeholders
        return None
    cal = dict(raw["calibration"])
    cal["flag_thresholds"] = {f: cal.get("flag_thresholds", {}).get(f, 0.5) for f in FLAG_NAMES}
    return Decision.model_validate(cal)


def git_commit(cwd: Path | None = None) -> str:
    """``HEAD`` commit of the working tree (``+dirty`` when modified), or ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")
