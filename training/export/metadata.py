"""``bundle.json`` fields that come from the checkpoint and from the run's evaluation report."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import model
from model.bundle import OOD_FILE, output_names, utc_now
from model.configio import config_hash
from model.flags import FLAG_NAMES
from training.checkpoint import Checkpoint, CheckpointError
from training.export.graph import checkpoint_flags

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"


def _finite_scalars(data: Any) -> dict[str, Any]:
    """Top-level numbers, strings and booleans of a mapping (NaN/inf become None)."""
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, bool | str | int):
            out[str(key)] = value
        elif isinstance(value, float):
            out[str(key)] = value if math.isfinite(value) else None
    return out


def read_report(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Read an evaluation ``report.json`` defensively.

    Args:
        path: The report file.

    Returns:
        ``(model metrics, linear-probe metrics, the report's checkpoint record)``. Top-level
        scalars and those of a ``summary``/``metrics`` mapping are the model's metrics; a
        mapping whose key names the probe or baseline (``probe``, ``linear_probe``, ``baseline``)
        and ``probe_*`` summary entries are the baseline. Anything else is left out; an
        unreadable report is logged and ignored.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("report_unreadable", extra={"fields": {"path": str(path), "error": str(exc)}})
        return {}, {}, {}
    if not isinstance(data, dict):
        log.warning("report_not_an_object", extra={"fields": {"path": str(path)}})
        return {}, {}, {}
    metrics = _finite_scalars(data)
    for key in ("summary", "metrics", "model", "fine_tuned", "finetuned"):
        metrics.update(_finite_scalars(data.get(key)))
    probe: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and any(w in key.lower() for w in ("probe", "baseline")):
            probe = _finite_scalars(value)
            for sub in ("summary", "metrics"):
                probe.update(_finite_scalars(value.get(sub)))
            break
    for key in [k for k in metrics if k.startswith("probe_")]:
        probe.setdefault(key.removeprefix("probe_"), metrics.pop(key))
    record = data.get("checkpoint") if isinstance(data.get("checkpoint"), dict) else {}
    return metrics, probe, record


def collect_metrics(
    ckpt: Checkpoint, report: Path | None, warnings: list[str] | None = None
) -> dict[str, Any]:
    """``bundle.json`` metrics: the evaluation report's summary when there is one, else the checkpoint's.

    Keys: the model's metrics at the top level, ``linear_probe`` (baseline), ``checkpoint``
    (validation metrics at the saved epoch) and ``source``. A report written for another epoch
    of the run is stale: it is ignored and a warning is appended to ``warnings``.

    Args:
        ckpt: The checkpoint exported.
        report: The run's ``report.json`` (``None`` or missing: the checkpoint's metrics only).
        warnings: Receives the stale-report warning.
    """
    metrics: dict[str, Any] = {}
    probe: dict[str, Any] = {}
    if report is not None and report.is_file():
        metrics, probe, record = read_report(report)
        epoch = record.get("epoch")
        if isinstance(epoch, int) and epoch != ckpt.epoch:
            text = (
                f"{report} evaluates epoch {epoch}, the checkpoint is epoch {ckpt.epoch}: stale, not used. "
                "Run authlens evaluate on this checkpoint and export again."
            )
            log.warning("report_stale", extra={"fields": {"path": str(report), "message": text}})
            if warnings is not None:
                warnings.append(text)
            metrics, probe = {}, {}
    ckpt_metrics = _finite_scalars(ckpt.metrics)
    for key, value in (ckpt.metrics or {}).items():
        if isinstance(value, dict) and any(w in key.lower() for w in ("probe", "baseline")) and not probe:
            probe = _finite_scalars(value)
    out: dict[str, Any] = dict(metrics)
    out["source"] = REPORT_FILE if metrics else "checkpoint"
    if probe:
        out["linear_probe"] = probe
    out["checkpoint"] = ckpt_metrics
    return out


def manifest_fields(ckpt: Checkpoint, *, name: str, version: str) -> dict[str, Any]:
    """The bundle.json fields that come from the checkpoint.

    ``flags`` are the trained flags (those the decision has thresholds for, vocabulary order),
    ``untrained_flags`` the rest of the vocabulary, and ``outputs`` the graph's outputs for them.

    Args:
        ckpt: A calibrated checkpoint.
        name, version: The bundle's name and version.

    Raises:
        CheckpointError: the checkpoint has no decision settings or OOD reference.
    """
    if ckpt.ood is None or ckpt.decision is None:
        raise CheckpointError(
            "The checkpoint has no decision settings or OOD reference; it was not calibrated."
        )
    flags = checkpoint_flags(ckpt)
    size = ckpt.input.image_size
    stride = 32  # the maps are the last feature map: input / 32 for timm's classification backbones
    net_cfg = ckpt.config
    return {
        "name": name,
        "version": version,
        "flags": flags,
        "untrained_flags": tuple(f for f in FLAG_NAMES if f not in flags),
        "outputs": output_names(bool(flags)),
        "input": {
            "height": size,
            "width": size,
            "resize": ckpt.input.resize,
            "draft_size": ckpt.input.draft_size,
            "mean": ckpt.input.mean,
            "std": ckpt.input.std,
        },
        "map_size": (math.ceil(size / stride), math.ceil(size / stride)),
        "embedding_dim": ckpt.ood.stats.dim,
        "decision": ckpt.decision.model_dump(mode="json"),
        "ood": {
            "method": ckpt.ood.stats.method,
            "file": OOD_FILE,
            "threshold": ckpt.ood.threshold,
            "quantile": ckpt.ood.quantile,
        },
        "metrics": collect_metrics(ckpt, None),
        "provenance": {
            "timm_model": ckpt.spec.backbone,
            "config_hash": config_hash(net_cfg) if net_cfg else "unknown",
            "data_manifest_hash": str(ckpt.data.get("manifest_hash", "unknown")),
            "git_commit": ckpt.git_commit,
            "created_at": utc_now(),
            "authlens_version": model.__version__,
            "training_images": int(ckpt.data.get("n_train", 0) or 0),
            "resolved_config": net_cfg,
            "checkpoint_epoch": int(ckpt.epoch),
        },
    }
