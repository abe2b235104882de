"""Checkpoint to verified ONNX bundle: graph, parity check, optional INT8, model card, provenance.

Usage: ``authlens export --checkpoint runs/demo/best.pt --out bundles/demo``

Steps (all in a temporary sibling of the output directory, renamed into place at the end, so
an interrupted export never leaves a directory that verifies; :mod:`training.export.bundle`):

1. Export :class:`model.network.ServingGraph` (uint8 NHWC in; normalisation and temperature
   inside) with a dynamic batch axis; ``onnx.checker`` full check; the I/O contract of
   :mod:`model.bundle` checked by name, type and rank (:mod:`training.export.graph`).
2. Parity: ONNX Runtime against torch on real held-out photos (decoded and resized by
   :mod:`model.imaging` with the checkpoint's input settings, :mod:`training.data.photos`), run at
   batch 1 and batch N; export fails when the probabilities differ by more than the tolerance
   (default 1e-4).
3. Optionally INT8 (:mod:`training.export.quantize`), calibrated on training photos, compared with
   fp32 on held-out photos (ROC-AUC, ECE, latency side by side); refused when the AUC drops
   by more than ``max_auc_drop`` unless explicitly allowed.
4. ``ood.npz``, ``MODEL_CARD.md`` (:mod:`training.export.model_card`), ``bundle.json`` (written
   last, :mod:`training.export.metadata`) and ``SHA256SUMS``.

This module is what the CLI calls; it also re-exports the names importers knew it by.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.bundle import Bundle
from training.checkpoint import Checkpoint, CheckpointError
from training.data.photos import (
    ExportImages,
    ImageSet,
    PhotoError,
    generated_images,
    images_for_checkpoint,
    images_from_manifest,
    load_image_set,
)
from training.export.bundle import check_auc_drop, check_destination, export_bundle
from training.export.graph import EXPORTER, check_graph, check_parity, export_onnx, serving_graph
from training.export.metadata import REPORT_FILE, collect_metrics, manifest_fields, read_report
from training.export.options import (
    DEFAULT_MAX_AUC_DROP,
    DEFAULT_OPSET,
    DEFAULT_PARITY_TOLERANCE,
    ExportError,
    ExportOptions,
    ExportSummary,
)

__all__ = [
    "DEFAULT_MAX_AUC_DROP",
    "DEFAULT_OPSET",
    "DEFAULT_PARITY_TOLERANCE",
    "EXPORTER",
    "REPORT_FILE",
    "ExportError",
    "ExportImages",
    "ExportOptions",
    "ExportSummary",
    "ImageSet",
    "check_auc_drop",
    "check_graph",
    "check_parity",
    "collect_metrics",
    "export_bundle",
    "export_checkpoint",
    "export_onnx",
    "generated_images",
    "images_for_checkpoint",
    "images_from_manifest",
    "load_image_set",
    "manifest_fields",
    "options_for",
    "read_report",
    "serving_graph",
]


def options_for(ckpt: Checkpoint, **overrides: Any) -> ExportOptions:
    """Export options: the checkpoint's ``export`` config section, then non-``None`` ``overrides``.

    Args:
        ckpt: The checkpoint; its config may hold an ``export`` section.
        **overrides: :class:`ExportOptions` fields; ``None`` keeps the config's value.

    Raises:
        ValueError: an option out of range (named).
    """
    section = ckpt.config.get("export") if isinstance(ckpt.config, dict) else None
    values: dict[str, Any] = {}
    if isinstance(section, dict):
        for key in ("opset", "int8", "max_auc_drop", "parity_tolerance"):
            if section.get(key) is not None:
                values[key] = section[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ExportOptions(**values)


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    images: Path | None = None,
    max_evaluation: int = 512,
    max_calibration: int = 128,
    summary: ExportSummary | None = None,
    **overrides: Any,
) -> Bundle:
    """Load a checkpoint file and export it (what ``authlens export`` runs).

    Photos come from ``images`` or from the run's split manifest; the evaluation report is read
    from ``report.json`` beside the checkpoint when present.

    Args:
        checkpoint: A ``best.pt`` written by training.
        out_dir: The bundle directory.
        name, version: Default: the run name and ``epoch<N>``.
        images: A manifest or dataset folder instead of the run's split manifest.
        max_evaluation, max_calibration: Photos used at most for evaluation/parity and calibration.
        summary: Filled with the figures measured.
        **overrides: :class:`ExportOptions` fields; ``None`` keeps the checkpoint config's value.

    Raises:
        CheckpointError: missing, foreign, newer-format or mismatched checkpoint.
        ExportError: no photos, or a failed check.
    """
    from training.checkpoint import load_checkpoint

    options_overwrite = overrides.get("overwrite")
    check_destination(Path(out_dir), True if options_overwrite is None else bool(options_overwrite))
    ckpt = load_checkpoint(checkpoint)
    try:
        ckpt.build_network()  # a mismatched architecture fails here, before any photo is read
    except CheckpointError as exc:
        raise CheckpointError(f"{checkpoint}: {exc}") from None
    except RuntimeError as exc:  # timm: unknown model name
        raise CheckpointError(f"{checkpoint}: cannot build {ckpt.spec.backbone!r}: {exc}") from None
    if ckpt.ood is None:
        raise CheckpointError(f"{checkpoint}: no out-of-distribution reference; it was not calibrated.")
    options = options_for(ckpt, **overrides)
    run_name = (ckpt.config.get("run") or {}).get("name") if isinstance(ckpt.config, dict) else None
    try:
        export_images = images_for_checkpoint(
            ckpt, Path(checkpoint), images, max_evaluation=max_evaluation, max_calibration=max_calibration
        )
    except PhotoError as exc:
        raise ExportError(str(exc)) from None
    return export_bundle(
        ckpt,
        out_dir,
        name=name or run_name or "authlens",
        version=version or f"epoch{ckpt.epoch}",
        images=export_images,
        options=options,
        checkpoint_path=Path(checkpoint),
        report=Path(checkpoint).parent / REPORT_FILE,
        summary=summary,
    )
