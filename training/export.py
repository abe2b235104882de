"""Checkpoint to ONNX bundle.

Usage: ``authlens export --checkpoint runs/demo/best.pt --out bundles/demo``
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

import model
from model.bundle import (
    INPUT_NAME,
    MODEL_FILE,
    OOD_FILE,
    OUTPUT_NAMES,
    Bundle,
    OODStats,
    save_ood_stats,
    utc_now,
    write_bundle,
)
from model.configio import config_hash
from model.flags import FLAG_NAMES
from model.network import ServingGraph
from training.checkpoint import Checkpoint, CheckpointError

log = logging.getLogger(__name__)


def export_onnx(ckpt: Checkpoint, path: Path, *, opset: int = 17) -> None:
    """Write the serving graph (uint8 NHWC in, calibrated outputs) with a dynamic batch axis."""
    graph = ServingGraph(ckpt.build_network(), temperature=ckpt.calibration.temperature).eval()
    size = ckpt.input.image_size
    example = torch.zeros((1, size, size, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}},
            opset_version=opset,
            dynamo=False,
        )


def manifest_fields(ckpt: Checkpoint, *, name: str, version: str) -> dict[str, Any]:
    """The bundle.json fields that come from the checkpoint."""
    if ckpt.ood is None:
        raise CheckpointError("The checkpoint has no out-of-distribution reference; it was not calibrated.")
    size = ckpt.input.image_size
    stride = 32  # the maps are the last feature map: input / 32 for timm's classification backbones
    net_cfg = ckpt.config
    from training.config import TrainConfig

    resolved = TrainConfig.model_validate(net_cfg) if net_cfg else None
    cal = ckpt.calibration
    return {
        "name": name,
        "version": version,
        "flags": FLAG_NAMES,
        "input": {
            "height": size,
            "width": size,
            "resize": ckpt.input.resize,
            "draft_size": ckpt.input.draft_size,
            "mean": ckpt.input.mean,
            "std": ckpt.input.std,
        },
        "map_size": (size // stride, size // stride),
        "embedding_dim": int(ckpt.ood.means.shape[1]),
        "decision": {
            "temperature": cal.temperature,
            "counterfeit_threshold": cal.counterfeit_threshold,
            "genuine_threshold": cal.genuine_threshold,
            "max_false_accusation_rate": cal.max_false_accusation_rate,
            "max_miss_rate": cal.max_miss_rate,
            "flag_thresholds": {f: cal.flag_thresholds.get(f, 0.5) for f in FLAG_NAMES},
            "min_image_side": cal.min_image_side,
            "min_sharpness": cal.min_sharpness,
        },
        "ood": {"file": OOD_FILE, "threshold": ckpt.ood.threshold, "quantile": ckpt.ood.quantile},
        "metrics": ckpt.metrics,
        "provenance": {
            "timm_model": ckpt.spec.backbone,
            "config_hash": config_hash(resolved) if resolved is not None else "unknown",
            "data_manifest_hash": str(ckpt.data.get("manifest_hash", "unknown")),
            "git_commit": ckpt.git_commit,
            "created_at": utc_now(),
            "authlens_version": model.__version__,
            "training_images": int(ckpt.data.get("n_train", 0)),
            "resolved_config": net_cfg,
        },
    }


def export_bundle(ckpt: Checkpoint, out_dir: Path, *, name: str = "authlens", version: str = "0") -> Bundle:
    """Export the graph and OOD statistics and write a verified bundle into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = manifest_fields(ckpt, name=name, version=version)
    export_onnx(ckpt, out_dir / MODEL_FILE)
    assert ckpt.ood is not None
    save_ood_stats(out_dir / OOD_FILE, OODStats(means=ckpt.ood.means, precision=ckpt.ood.precision))
    bundle = write_bundle(out_dir, manifest_fields=fields)
    log.info("bundle_written", extra={"fields": {"path": str(out_dir), "sha256": bundle.sha256}})
    return bundle
