"""Writing a verified bundle: graph, parity, optional INT8, OOD statistics, model card, ``bundle.json``.

Everything is written into a temporary sibling of the output directory and renamed into place at
the end, so an interrupted export never leaves a directory that verifies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.bundle import (
    CARD_FILE,
    INT8_FILE,
    MANIFEST_NAME,
    MODEL_FILE,
    OOD_FILE,
    Bundle,
    BundleError,
    Decision,
    load_bundle,
    sha256_file,
    write_bundle,
)
from model.logs import log_event
from model.ood import OODStats, save_ood
from training.checkpoint import Checkpoint
from training.data.photos import ExportImages, ImageSet, generated_images
from training.export.graph import EXPORTER, check_graph, check_parity, export_onnx
from training.export.metadata import collect_metrics, manifest_fields
from training.export.options import ExportError, ExportOptions, ExportSummary

if TYPE_CHECKING:
    from training.export.quantize import Int8Comparison, QuantResult

__all__ = [
    "ExportError",
    "ExportOptions",
    "ExportSummary",
    "check_auc_drop",
    "check_destination",
    "export_bundle",
]

log = logging.getLogger(__name__)


def check_destination(out_dir: Path, overwrite: bool) -> None:
    """Refuse an output path that is a file, a folder of other things, or a bundle not to replace.

    Args:
        out_dir: The bundle directory to write.
        overwrite: An existing bundle there may be replaced.

    Raises:
        ExportError: the path cannot take the bundle; the message says what to do.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory.")
    entries = list(out_dir.iterdir())
    if not entries:
        return
    if not (out_dir / MANIFEST_NAME).is_file():
        raise ExportError(
            f"{out_dir} is not empty and holds no bundle; refusing to replace it. Choose a new --out."
        )
    if not overwrite:
        raise ExportError(f"{out_dir} already holds a bundle; pass --force to replace it.")


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished staging directory to ``out_dir``, replacing what is there."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp made it 0700
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    if not any(out_dir.iterdir()):
        out_dir.rmdir()
        staging.rename(out_dir)
        return
    # POSIX cannot swap two directories atomically: move the old one aside first (a reader
    # sees the old bundle, then no directory, then the new bundle; never a mixture).
    old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
    out_dir.rename(old)
    try:
        staging.rename(out_dir)
    except OSError:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``out_dir`` to write into, removed on exit unless published."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_auc_drop(roc_auc_fp32: float, roc_auc_int8: float, *, max_drop: float, allow: bool) -> str | None:
    """Apply the INT8 accuracy gate.

    Args:
        roc_auc_fp32, roc_auc_int8: ROC-AUC of both graphs on the same photos.
        max_drop: Largest drop accepted.
        allow: Keep a larger drop (with a warning) instead of refusing.

    Returns:
        ``None`` when the drop is within ``max_drop``; a warning text when it is not but ``allow``.

    Raises:
        ExportError: the drop exceeds ``max_drop`` and ``allow`` is false.
    """
    drop = roc_auc_fp32 - roc_auc_int8
    if drop <= max_drop + 1e-12:
        return None
    text = (
        f"INT8 lowers ROC-AUC by {drop:.4f} ({roc_auc_fp32:.4f} -> {roc_auc_int8:.4f}), more than "
        f"the allowed {max_drop:g}"
    )
    if not allow:
        raise ExportError(f"{text}. Export without --int8, or pass --allow-auc-drop to keep it anyway.")
    return f"{text}; kept because --allow-auc-drop was given (recorded in bundle.json and MODEL_CARD.md)."


def _check_int8_photos(images: ExportImages | None, options: ExportOptions) -> None:
    """INT8 needs labelled held-out photos of both classes and training photos to calibrate on."""
    if options.int8 and (images is None or images.calibration is None or images.evaluation.labels is None):
        raise ExportError(
            "INT8 needs real photos: labelled held-out photos and training photos to calibrate on."
        )
    if options.int8 and images is not None and len(np.unique(images.evaluation.labels)) < 2:
        raise ExportError(
            f"INT8 needs genuine and counterfeit held-out photos to compare ROC-AUC; {images.evaluation.source} "
            "has one class only."
        )


def _parity_set(ckpt: Checkpoint, images: ExportImages | None, limit: int) -> ImageSet:
    """The first ``limit`` evaluation photos, unlabelled; generated stand-ins without photos."""
    parity_set = images.evaluation if images is not None else generated_images(ckpt)
    if len(parity_set) > limit:
        parity_set = ImageSet(pixels=parity_set.pixels[:limit], labels=None, source=parity_set.source)
    return parity_set


def _export_checked_graph(
    ckpt: Checkpoint, path: Path, parity_set: ImageSet, options: ExportOptions, fields: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """Export, check and compare the graph; ``fields`` gets ``map_size`` and ``parity``.

    Returns:
        The parity report and the opset written.
    """
    log_event(log, "export", stage="exporting the ONNX graph")
    opset = export_onnx(ckpt, path, opset=options.opset)
    check_graph(path, opset=opset, flags=fields["flags"])
    log_event(log, "export", stage=f"parity: torch vs ONNX Runtime on {len(parity_set)} photos")
    parity = check_parity(ckpt, path, parity_set, tolerance=options.parity_tolerance)
    parity.pop("_onnxruntime")
    fields["map_size"] = parity.pop("_map_size")
    graph_dim = parity.pop("_embedding_dim")
    if graph_dim != fields["embedding_dim"]:
        raise ExportError(
            f"The graph's embedding has {graph_dim} dimensions but the OOD reference "
            f"{fields['embedding_dim']}; the checkpoint's OOD statistics belong to another network."
        )
    fields["parity"] = parity
    return parity, opset


def _runtime_provenance(opset: int, checkpoint_path: Path | None) -> dict[str, Any]:
    """Provenance known only at export: opset, exporter, library versions, checkpoint hash."""
    import onnxruntime as ort
    import torch

    return {
        "opset": opset,
        "exporter": EXPORTER,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        "checkpoint_sha256": sha256_file(checkpoint_path) if checkpoint_path else None,
    }


def _write_card_and_manifest(
    staging: Path, fields: dict[str, Any], ckpt: Checkpoint, checkpoint_path: Path | None, warnings: list[str]
) -> None:
    """``MODEL_CARD.md``, then ``bundle.json`` and ``SHA256SUMS``, verified strictly."""
    from training.export.model_card import describe_data, render_model_card

    data = describe_data(ckpt.data.get("manifest"), checkpoint_path.parent if checkpoint_path else None)
    card = render_model_card(fields, ckpt=ckpt, data=data, warnings=warnings)
    (staging / CARD_FILE).write_text(card, encoding="utf-8")
    try:
        write_bundle(staging, manifest_fields=fields, extra_files=(CARD_FILE,), strict=True)
    except BundleError as exc:
        raise ExportError(f"The bundle did not verify after writing: {exc}") from None


def export_bundle(
    ckpt: Checkpoint,
    out_dir: Path,
    *,
    name: str = "authlens",
    version: str = "0",
    images: ExportImages | None = None,
    options: ExportOptions | None = None,
    checkpoint_path: Path | None = None,
    report: Path | None = None,
    summary: ExportSummary | None = None,
) -> Bundle:
    """Export, check and write a verified bundle into ``out_dir`` (atomically).

    Args:
        ckpt: The trained checkpoint.
        out_dir: Bundle directory; created, or replaced when it holds a bundle and
            ``options.overwrite``.
        name, version: The bundle's name and version.
        images: Photos for parity (and INT8). ``None``: generated stand-ins (recorded as such);
            INT8 then refuses, since it needs real labelled photos.
        options: Checks and INT8 settings.
        checkpoint_path: The checkpoint file, for its SHA-256 in the provenance.
        report: An evaluation ``report.json`` whose summary goes into the metrics.
        summary: Filled with the figures measured, for the caller to print.

    Raises:
        ExportError: graph, parity or INT8 check failed; the output directory is left as it was.
        CheckpointError: the checkpoint does not rebuild or is not calibrated.
    """
    options = options or ExportOptions()
    summary = summary if summary is not None else ExportSummary()
    out_dir = Path(out_dir)
    check_destination(out_dir, options.overwrite)
    fields = manifest_fields(ckpt, name=name, version=version)
    fields["metrics"] = collect_metrics(ckpt, report, summary.warnings)
    _check_int8_photos(images, options)
    parity_set = _parity_set(ckpt, images, options.parity_images)
    assert ckpt.ood is not None and ckpt.decision is not None  # manifest_fields refused otherwise
    with _staging(out_dir) as staging:
        parity, opset = _export_checked_graph(ckpt, staging / MODEL_FILE, parity_set, options, fields)
        summary.parity = parity
        fields["provenance"].update(_runtime_provenance(opset, checkpoint_path))
        ood = ckpt.ood.stats
        save_ood(staging / OOD_FILE, ood)
        if options.int8:
            assert images is not None and images.calibration is not None
            log_event(log, "export", stage="INT8: calibrate, quantize, compare ROC-AUC and speed with fp32")
            fields["int8"] = _make_int8(
                staging, images, ood, float(ckpt.ood.threshold), ckpt.decision, options, summary
            )
        _write_card_and_manifest(staging, fields, ckpt, checkpoint_path, summary.warnings)
        _publish(staging, out_dir)
    bundle = load_bundle(out_dir, strict=True)
    log.info(
        "bundle_written",
        extra={
            "fields": {
                "path": str(out_dir),
                "sha256": bundle.sha256,
                "parity_max_abs_diff": parity["max_abs_diff"],
                "int8": options.int8,
            }
        },
    )
    return bundle


def _make_int8(
    staging: Path,
    images: ExportImages,
    ood: OODStats,
    ood_threshold: float,
    decision: Decision,
    options: ExportOptions,
    summary: ExportSummary,
) -> dict[str, Any]:
    """Quantize, compare with fp32 and apply the AUC gate; returns the ``bundle.json`` INT8 spec."""
    from training.export.quantize import QuantizationError, QuantSettings, compare_int8, quantize_int8

    assert images.calibration is not None and images.evaluation.labels is not None
    settings = options.quant or QuantSettings()
    try:
        result = quantize_int8(staging / MODEL_FILE, staging / INT8_FILE, images.calibration.pixels, settings)
        cmp = compare_int8(
            staging / MODEL_FILE,
            staging / INT8_FILE,
            images.evaluation.pixels,
            images.evaluation.labels,
            ood=ood,
            ood_threshold=ood_threshold,
            batch_size=options.latency_batch,
            repeats=options.latency_repeats,
            decision=decision,
        )
    except QuantizationError as exc:
        raise ExportError(f"INT8: {exc}") from None
    warning = check_auc_drop(
        cmp.roc_auc_fp32, cmp.roc_auc_int8, max_drop=options.max_auc_drop, allow=options.allow_auc_drop
    )
    if warning:
        summary.warnings.append(warning)
        log.warning("int8_auc_drop_allowed", extra={"fields": {"message": warning}})
    spec = _int8_spec(cmp, result, images, options, auc_drop_allowed=warning is not None)
    summary.int8 = {**spec, "max_abs_diff_flag_probs": cmp.max_abs_diff_flag_probs, "repeats": cmp.repeats}
    return spec


def _int8_spec(
    cmp: Int8Comparison,
    result: QuantResult,
    images: ExportImages,
    options: ExportOptions,
    *,
    auc_drop_allowed: bool,
) -> dict[str, Any]:
    """The ``bundle.json`` INT8 fields of the fp32/INT8 comparison and the quantization."""
    settings = result.settings
    return {
        "file": INT8_FILE,
        "roc_auc_fp32": cmp.roc_auc_fp32,
        "roc_auc_int8": cmp.roc_auc_int8,
        "speedup": cmp.speedup,
        "calibration_images": result.calibration_images,
        "evaluation_images": cmp.images,
        "evaluation_source": images.evaluation.source,
        "max_auc_drop": options.max_auc_drop,
        "auc_drop_allowed": auc_drop_allowed,
        "ece_fp32": cmp.ece_fp32,
        "ece_int8": cmp.ece_int8,
        "max_abs_diff_p_genuine": cmp.max_abs_diff_p_genuine,
        "mean_abs_diff_p_genuine": cmp.mean_abs_diff_p_genuine,
        "ood_flips": cmp.ood_flips,
        "verdict_flips": cmp.verdict_flips,
        "latency_ms_fp32": cmp.latency_ms_fp32,
        "latency_ms_int8": cmp.latency_ms_int8,
        "batch_size": cmp.batch_size,
        "size_bytes_fp32": cmp.size_bytes_fp32,
        "size_bytes_int8": cmp.size_bytes_int8,
        "quant_format": settings.quant_format,
        "per_channel": settings.per_channel,
        "calibration_method": settings.calibration_method,
        "excluded_nodes": result.excluded_nodes,
    }
