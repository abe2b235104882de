"""Checkpoint to verified ONNX bundle: graph, parity check, optional INT8, model card, provenance.

Usage: ``authlens export --checkpoint runs/demo/best.pt --out bundles/demo``

Steps (all in a temporary sibling of the output directory, renamed into place at the end, so
an interrupted export never leaves a directory that verifies):

1. Export :class:`model.network.ServingGraph` (uint8 NHWC in; normalisation and temperature
   inside) with a dynamic batch axis; ``onnx.checker`` full check; the I/O contract of
   :mod:`model.bundle` checked by name, type and rank.
2. Parity: ONNX Runtime against torch on real held-out photos (decoded and resized by
   :mod:`model.imaging` with the checkpoint's input settings), run at batch 1 and batch N;
   export fails when the probabilities differ by more than the tolerance (default 1e-4).
3. Optionally INT8 (:mod:`training.export.quantize`), calibrated on training photos, compared with
   fp32 on held-out photos (ROC-AUC, ECE, latency side by side); refused when the AUC drops
   by more than ``max_auc_drop`` unless explicitly allowed.
4. ``ood.npz``, ``MODEL_CARD.md``, ``bundle.json`` (written last) and ``SHA256SUMS``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import model
from model.bundle import (
    CARD_FILE,
    INPUT_NAME,
    INT8_FILE,
    MANIFEST_NAME,
    MODEL_FILE,
    OOD_FILE,
    OUTPUT_NAMES,
    Bundle,
    BundleError,
    Decision,
    OODStats,
    load_bundle,
    save_ood_stats,
    sha256_file,
    utc_now,
    write_bundle,
)
from model.configio import config_hash
from model.flags import FLAG_NAMES
from model.imaging import ImageError, decode_image, resize_for_model
from model.logs import log_event
from training.checkpoint import Checkpoint, CheckpointError

log = logging.getLogger(__name__)

# Exporter: torch.export-based ("dynamo"), not the TorchScript one, on evidence
# (benchmarks/bench_export.py, sneakers efficientnet_lite0 at 224 px, 2-core EPYC, side by side):
# parity 2.95e-6 vs 2.92e-6 and ORT latency 105 vs 108 ms per batch of 8, i.e. the same, because
# ORT folds the TorchScript graph's Constant/Identity nodes (175 raw nodes vs 107) into the same
# ops. Dynamo writes the clean graph directly and is torch's maintained path; the TorchScript
# exporter warns it is deprecated and will be removed, which would break export on a torch
# upgrade. Dynamo's costs: ~5 s more per export (6.7 s vs 1.7 s), small next to parity and INT8,
# and a lowest opset of 18 (17 fails in its version converter), within the contract's ">= 17".
EXPORTER = "dynamo"
MIN_DYNAMO_OPSET = 18
DEFAULT_OPSET = 18
DEFAULT_PARITY_TOLERANCE = 1e-4
DEFAULT_MAX_AUC_DROP = 0.01
PROBABILITY_OUTPUTS: tuple[str, ...] = ("p_genuine", "flag_probs")
REPORT_FILE = "report.json"
_OUTPUT_RANKS = {"p_genuine": 1, "flag_probs": 2, "cam": 3, "flag_maps": 4, "embedding": 2}


class ExportError(RuntimeError):
    """An export that must not produce a bundle; the message says what failed and what to do."""


@dataclass(frozen=True)
class ImageSet:
    """Model-input photos for parity, calibration or evaluation.

    Attributes:
        pixels: ``(N, H, W, 3)`` uint8, decoded and resized like serving does.
        labels: ``(N,)`` 1 = counterfeit, 0 = genuine; ``None`` when unlabelled.
        source: Where they came from, for the record (manifest and split, or ``generated``).
    """

    pixels: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.pixels)


@dataclass(frozen=True)
class ExportImages:
    """The photos an export uses.

    Attributes:
        evaluation: Held-out photos: parity, and with labels the INT8 AUC comparison.
        calibration: Training photos for INT8 calibration (``None``: not available).
    """

    evaluation: ImageSet
    calibration: ImageSet | None = None


@dataclass(frozen=True)
class ExportOptions:
    """How an export is checked.

    Attributes:
        opset: ONNX opset (at least 18 with the dynamo exporter; lower values are raised to 18).
        parity_tolerance: Largest allowed |ORT - torch| of the probabilities.
        parity_images: Photos compared for parity (the first of the evaluation set).
        int8: Also write ``model.int8.onnx``.
        max_auc_drop: Largest ROC-AUC drop INT8 may cause.
        allow_auc_drop: Keep an INT8 model whose AUC dropped more (recorded in the bundle and card).
        latency_batch: Photos per batch of the fp32/INT8 timing.
        latency_repeats: Timed runs of each graph.
        overwrite: Replace an existing bundle at the output path.
    """

    opset: int = DEFAULT_OPSET
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE
    parity_images: int = 32
    int8: bool = False
    max_auc_drop: float = DEFAULT_MAX_AUC_DROP
    allow_auc_drop: bool = False
    latency_batch: int = 8
    latency_repeats: int = 10
    overwrite: bool = True
    quant: Any = None  # training.export.quantize.QuantSettings; None = its defaults

    def __post_init__(self) -> None:
        if self.opset < 17:
            raise ValueError(f"opset must be 17 or newer, got {self.opset}.")
        if not self.parity_tolerance > 0:
            raise ValueError(f"parity_tolerance must be positive, got {self.parity_tolerance}.")
        if self.max_auc_drop < 0:
            raise ValueError(f"max_auc_drop must be at least 0, got {self.max_auc_drop}.")
        for name in ("parity_images", "latency_batch", "latency_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")


@dataclass
class ExportSummary:
    """What an export measured, for the CLI and the log."""

    parity: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- photos


def load_image_set(
    records: Sequence[Any], ckpt: Checkpoint, *, source: str, limit: int | None = None, seed: int = 0
) -> ImageSet:
    """Decode and resize manifest records exactly as serving will (:mod:`model.imaging`).

    Args:
        records: :class:`training.data.manifest.Record` rows.
        ckpt: Supplies input size, resize policy and JPEG draft size.
        source: Description kept with the set.
        limit: Keep at most this many, a class-stratified random sample (seeded).
        seed: Sampling seed.

    Raises:
        ExportError: no records, or a photo that cannot be read (named).
    """
    chosen = list(records)
    if not chosen:
        raise ExportError(f"No photos in {source}.")
    if limit is not None and len(chosen) > limit:
        rng = np.random.default_rng(seed)
        by_label: dict[str, list[Any]] = {}
        for r in chosen:
            by_label.setdefault(r.label, []).append(r)
        picked: list[Any] = []
        for label in sorted(by_label):
            group = by_label[label]
            share = max(1, round(limit * len(group) / len(chosen)))
            picked += [
                group[i] for i in sorted(rng.choice(len(group), min(share, len(group)), replace=False))
            ]
        chosen = [picked[i] for i in rng.permutation(len(picked))[:limit]]  # classes mixed in order
    size = (ckpt.input.image_size, ckpt.input.image_size)
    pixels = np.empty((len(chosen), *size, 3), dtype=np.uint8)
    for i, r in enumerate(chosen):
        try:
            decoded = decode_image(Path(r.file).read_bytes(), draft_size=ckpt.input.draft_size)
        except (OSError, ImageError) as exc:
            raise ExportError(f"{r.file}: cannot be used for export ({exc}).") from None
        pixels[i] = resize_for_model(decoded, size, policy=ckpt.input.resize)[0]  # type: ignore[arg-type]
    labels = np.array([1 if r.label == "counterfeit" else 0 for r in chosen], dtype=np.int64)
    return ImageSet(pixels=pixels, labels=labels, source=source)


def generated_images(ckpt: Checkpoint, n: int = 8, seed: int = 0) -> ImageSet:
    """Textured stand-in photos (gradients + noise) for exports without any real photo at hand.

    Parity on these still proves the graph computes what torch computes, but the bundle records
    ``image_source="generated"``; the CLI always uses real photos.
    """
    rng = np.random.default_rng(seed)
    s = ckpt.input.image_size
    y, x = np.mgrid[0:s, 0:s].astype(np.float64)
    out = np.empty((n, s, s, 3), dtype=np.uint8)
    for i in range(n):
        a, b = rng.uniform(0.5, 3.0, 2)
        base = np.stack([x * 255 / s * a, y * 255 / s * b, (x * a + y * b) * 2], axis=-1) % 256
        out[i] = np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)
    return ImageSet(pixels=out, labels=None, source="generated")


def _resolve_data_path(value: str, ckpt_path: Path | None) -> Path | None:
    p = Path(value).expanduser()
    candidates = [p] if p.is_absolute() else [*([ckpt_path.parent / p] if ckpt_path else []), Path.cwd() / p]
    return next((c for c in candidates if c.exists()), None)


def images_from_manifest(
    path: Path,
    ckpt: Checkpoint,
    *,
    max_evaluation: int = 512,
    max_calibration: int = 128,
    seed: int = 0,
) -> ExportImages:
    """Evaluation photos from the held-out splits, calibration photos from the training split.

    A manifest without a ``split`` column (or with only one split) lends the same photos to both
    roles; the INT8 figures then say so in their source.

    Raises:
        ExportError: the manifest cannot be read or holds no photos.
    """
    from training.data.manifest import ManifestError, load_manifest

    try:
        records = load_manifest(path)
    except ManifestError as exc:
        raise ExportError(f"Export photos: {exc}") from None
    held_out = [r for r in records if r.split in ("val", "test")]
    train = [r for r in records if r.split == "train"]
    if held_out and train:
        splits = "+".join(sorted({r.split for r in held_out}))  # type: ignore[type-var]
        evaluation = load_image_set(
            held_out, ckpt, source=f"{path} ({splits})", limit=max_evaluation, seed=seed
        )
        calibration = load_image_set(train, ckpt, source=f"{path} (train)", limit=max_calibration, seed=seed)
        return ExportImages(evaluation=evaluation, calibration=calibration)
    evaluation = load_image_set(records, ckpt, source=f"{path} (all rows)", limit=max_evaluation, seed=seed)
    calibration = load_image_set(
        records, ckpt, source=f"{path} (all rows, same as evaluation)", limit=max_calibration, seed=seed + 1
    )
    return ExportImages(evaluation=evaluation, calibration=calibration)


def images_for_checkpoint(
    ckpt: Checkpoint,
    ckpt_path: Path | None,
    images: Path | None = None,
    *,
    max_evaluation: int = 512,
    max_calibration: int = 128,
    seed: int = 0,
) -> ExportImages:
    """The photos for an export: ``images`` when given, else the run's split manifest.

    Raises:
        ExportError: no photos can be found; the message names where it looked.
    """
    kwargs = {"max_evaluation": max_evaluation, "max_calibration": max_calibration, "seed": seed}
    if images is not None:
        if not Path(images).exists():
            raise ExportError(f"--images {images}: no such file or folder.")
        return images_from_manifest(Path(images), ckpt, **kwargs)  # type: ignore[arg-type]
    tried = []
    for key in ("split_manifest", "manifest"):
        value = ckpt.data.get(key)
        if not value:
            continue
        found = _resolve_data_path(str(value), ckpt_path)
        tried.append(f"data.{key}={value}")
        if found is not None:
            return images_from_manifest(found, ckpt, **kwargs)  # type: ignore[arg-type]
    where = "; ".join(tried) if tried else "the checkpoint names no manifest"
    raise ExportError(
        f"No photos for the parity check ({where}, not found). Pass --images with a manifest or a "
        "genuine/ + counterfeit/ folder."
    )


# --------------------------------------------------------------------------- graph


_EXPORTER_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo")


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise the exporter's chatty loggers (one INFO line per folded initializer) to WARNING."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def serving_graph(ckpt: Checkpoint):  # -> model.network.ServingGraph
    """The network as it is exported: uint8 NHWC in, the checkpoint's temperature inside.

    Raises:
        CheckpointError: the checkpoint is not calibrated.
    """
    from model.network import ServingGraph

    if ckpt.decision is None:
        raise CheckpointError("The checkpoint has no decision settings; it was not calibrated.")
    return ServingGraph(ckpt.build_network(), temperature=ckpt.decision.temperature).eval()


def export_onnx(ckpt: Checkpoint, path: Path, *, opset: int = DEFAULT_OPSET) -> int:
    """Write the serving graph (uint8 NHWC in, calibrated outputs) with a dynamic batch axis.

    Returns:
        The opset written (``max(opset, 18)``, see :data:`EXPORTER`).

    Raises:
        ExportError: torch could not export the network.
    """
    import torch

    opset = max(opset, MIN_DYNAMO_OPSET)
    graph = serving_graph(ckpt)
    size = ckpt.input.image_size
    # Example batch of 2: torch.export specialises dimensions of size 1, which would fix the batch.
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), _quiet(*_EXPORTER_LOGGERS):
            program = torch.onnx.export(
                graph,
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # torch.export raises many types; none is recoverable here
        raise ExportError(
            f"torch could not export {ckpt.spec.backbone}: {str(exc).splitlines()[0]}"
        ) from None
    assert program is not None  # dynamo=True always returns the program
    program.save(str(path))
    return opset


def check_graph(path: Path, *, opset: int) -> None:
    """``onnx.checker`` full check plus the bundle's I/O contract (names, dtypes, ranks, batch axis).

    Raises:
        ExportError: the graph is invalid or breaks the contract; the message names the tensor.
    """
    import onnx

    m = onnx.load(str(path))
    try:
        onnx.checker.check_model(m, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path.name}: onnx.checker rejects the graph: {exc}") from None
    default_opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if default_opset < max(opset, 17):
        raise ExportError(f"{path.name}: opset {default_opset}, expected at least {max(opset, 17)}.")
    inputs = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ExportError(f"{path.name}: inputs {[i.name for i in inputs]}, expected [{INPUT_NAME!r}].")
    t = inputs[0].type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim]
    if (
        t.elem_type != onnx.TensorProto.UINT8
        or len(dims) != 4
        or dims[3] != 3
        or not isinstance(dims[0], str)
    ):
        raise ExportError(
            f"{path.name}: input {INPUT_NAME} is {dims} of type {t.elem_type}, expected uint8 (batch, H, W, 3)."
        )
    outputs = [o.name for o in m.graph.output]
    if outputs != list(OUTPUT_NAMES):
        raise ExportError(f"{path.name}: outputs {outputs}, expected {list(OUTPUT_NAMES)}.")
    for o in m.graph.output:
        t = o.type.tensor_type
        rank = len(t.shape.dim)
        if t.elem_type != onnx.TensorProto.FLOAT or rank != _OUTPUT_RANKS[o.name]:
            raise ExportError(
                f"{path.name}: output {o.name} has type {t.elem_type} and rank {rank}, "
                f"expected float32 of rank {_OUTPUT_RANKS[o.name]}."
            )


def check_parity(
    ckpt: Checkpoint,
    onnx_path: Path,
    images: ImageSet,
    *,
    tolerance: float = DEFAULT_PARITY_TOLERANCE,
    batch: int = 16,
) -> dict[str, Any]:
    """Compare ONNX Runtime with torch on ``images``; batch 1 and batch N must agree as well.

    Returns:
        The :class:`model.bundle.ParityReport` fields.

    Raises:
        ExportError: the probabilities differ by more than ``tolerance`` (the message gives the
            figure and the output), or batch 1 and batch N disagree, or an output has the wrong shape.
    """
    import onnxruntime as ort
    import torch

    from model.session import make_session

    graph = serving_graph(ckpt)
    session = make_session(onnx_path)
    pixels = images.pixels
    n = len(pixels)
    diffs = dict.fromkeys(OUTPUT_NAMES, 0.0)
    batch_sizes: set[int] = set()
    first: dict[str, np.ndarray] = {}
    for start in range(0, n, batch):
        chunk = np.ascontiguousarray(pixels[start : start + batch])
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk})
        batch_sizes.add(len(chunk))
        with torch.no_grad():
            want = [t.numpy() for t in graph(torch.from_numpy(chunk))]
        for name, g, w in zip(OUTPUT_NAMES, got, want, strict=True):
            if g.shape != w.shape:
                raise ExportError(
                    f"Parity: output {name} has shape {g.shape} in ONNX Runtime, {w.shape} in torch."
                )
            gap = float(np.abs(g.astype(np.float64) - w).max())
            diffs[name] = max(diffs[name], gap if math.isfinite(gap) else math.inf)  # NaN must fail
        if start == 0:
            first = dict(zip(OUTPUT_NAMES, got, strict=True))
    # Dynamic batch: the first photo alone must give what it gave inside the first batch.
    single = session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(pixels[:1])})
    batch_sizes.add(1)
    for name, value in zip(OUTPUT_NAMES, single, strict=True):
        if value.shape[0] != 1:
            raise ExportError(
                f"Parity: batch 1 gave {name} of shape {value.shape}; the batch axis is not dynamic."
            )
        gap = float(np.abs(value[0] - first[name][0]).max())
        if name in PROBABILITY_OUTPUTS and not gap <= tolerance:
            raise ExportError(
                f"Parity: {name} of one photo differs by {gap:.3g} between batch 1 and batch "
                f"{min(batch, n)} (tolerance {tolerance:g})."
            )
    broken = [k for k, v in diffs.items() if not math.isfinite(v)]
    if broken:
        raise ExportError(f"Parity failed: ONNX Runtime gives NaN or infinity in {', '.join(broken)}.")
    worst_name = max(PROBABILITY_OUTPUTS, key=lambda k: diffs[k])
    max_diff = diffs[worst_name]
    if not math.isfinite(max_diff) or max_diff > tolerance:
        raise ExportError(
            f"Parity failed: ONNX Runtime and torch differ by {max_diff:.3g} in {worst_name} on {n} photos "
            f"from {images.source} (tolerance {tolerance:g}). The exported graph does not compute what "
            "the checkpoint computes."
        )
    return {
        "max_abs_diff": max_diff,
        "tolerance": tolerance,
        "images": n,
        "image_source": images.source,
        "batch_sizes": tuple(sorted(batch_sizes)),
        "output_max_abs_diff": diffs,
        "_map_size": tuple(int(v) for v in first["cam"].shape[1:]),
        "_embedding_dim": int(first["embedding"].shape[1]),
        "_onnxruntime": ort.__version__,
    }


# --------------------------------------------------------------------------- metadata


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
    """The bundle.json fields that come from the checkpoint."""
    if ckpt.ood is None or ckpt.decision is None:
        raise CheckpointError(
            "The checkpoint has no decision settings or OOD reference; it was not calibrated."
        )
    size = ckpt.input.image_size
    stride = 32  # the maps are the last feature map: input / 32 for timm's classification backbones
    net_cfg = ckpt.config
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
        "map_size": (math.ceil(size / stride), math.ceil(size / stride)),
        "embedding_dim": int(ckpt.ood.means.shape[1]),
        "decision": ckpt.decision.model_dump(mode="json"),
        "ood": {"file": OOD_FILE, "threshold": ckpt.ood.threshold, "quantile": ckpt.ood.quantile},
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


# --------------------------------------------------------------------------- writing


def _check_destination(out_dir: Path, overwrite: bool) -> None:
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
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_auc_drop(roc_auc_fp32: float, roc_auc_int8: float, *, max_drop: float, allow: bool) -> str | None:
    """Apply the INT8 accuracy gate.

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
    import onnxruntime as ort
    import torch

    options = options or ExportOptions()
    summary = summary if summary is not None else ExportSummary()
    out_dir = Path(out_dir)
    _check_destination(out_dir, options.overwrite)
    fields = manifest_fields(ckpt, name=name, version=version)
    fields["metrics"] = collect_metrics(ckpt, report, summary.warnings)
    if options.int8 and (images is None or images.calibration is None or images.evaluation.labels is None):
        raise ExportError(
            "INT8 needs real photos: labelled held-out photos and training photos to calibrate on."
        )
    if options.int8 and images is not None and len(np.unique(images.evaluation.labels)) < 2:
        raise ExportError(
            f"INT8 needs genuine and counterfeit held-out photos to compare ROC-AUC; {images.evaluation.source} "
            "has one class only."
        )
    parity_set = images.evaluation if images is not None else generated_images(ckpt)
    if len(parity_set) > options.parity_images:
        parity_set = ImageSet(
            pixels=parity_set.pixels[: options.parity_images], labels=None, source=parity_set.source
        )
    assert ckpt.ood is not None and ckpt.decision is not None  # manifest_fields refused otherwise
    with _staging(out_dir) as staging:
        log_event(log, "export", stage="exporting the ONNX graph")
        opset = export_onnx(ckpt, staging / MODEL_FILE, opset=options.opset)
        check_graph(staging / MODEL_FILE, opset=opset)
        log_event(log, "export", stage=f"parity: torch vs ONNX Runtime on {len(parity_set)} photos")
        parity = check_parity(ckpt, staging / MODEL_FILE, parity_set, tolerance=options.parity_tolerance)
        parity.pop("_onnxruntime")
        fields["map_size"] = parity.pop("_map_size")
        graph_dim = parity.pop("_embedding_dim")
        if graph_dim != fields["embedding_dim"]:
            raise ExportError(
                f"The graph's embedding has {graph_dim} dimensions but the OOD reference "
                f"{fields['embedding_dim']}; the checkpoint's OOD statistics belong to another network."
            )
        fields["parity"] = parity
        summary.parity = parity
        fields["provenance"].update(
            {
                "opset": opset,
                "exporter": EXPORTER,
                "torch_version": torch.__version__,
                "onnxruntime_version": ort.__version__,
                "checkpoint_sha256": sha256_file(checkpoint_path) if checkpoint_path else None,
            }
        )
        ood = OODStats(means=ckpt.ood.means, precision=ckpt.ood.precision)
        save_ood_stats(staging / OOD_FILE, ood)
        if options.int8:
            assert images is not None and images.calibration is not None
            log_event(log, "export", stage="INT8: calibrate, quantize, compare ROC-AUC and speed with fp32")
            fields["int8"] = _make_int8(
                staging, images, ood, float(ckpt.ood.threshold), ckpt.decision, options, summary
            )
        from training.export.model_card import describe_data, render_model_card

        data = describe_data(ckpt.data.get("manifest"), checkpoint_path.parent if checkpoint_path else None)
        card = render_model_card(fields, ckpt=ckpt, data=data, warnings=summary.warnings)
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        try:
            write_bundle(staging, manifest_fields=fields, extra_files=(CARD_FILE,), strict=True)
        except BundleError as exc:
            raise ExportError(f"The bundle did not verify after writing: {exc}") from None
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
    spec = {
        "file": INT8_FILE,
        "roc_auc_fp32": cmp.roc_auc_fp32,
        "roc_auc_int8": cmp.roc_auc_int8,
        "speedup": cmp.speedup,
        "calibration_images": result.calibration_images,
        "evaluation_images": cmp.images,
        "evaluation_source": images.evaluation.source,
        "max_auc_drop": options.max_auc_drop,
        "auc_drop_allowed": warning is not None,
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
    summary.int8 = {**spec, "max_abs_diff_flag_probs": cmp.max_abs_diff_flag_probs, "repeats": cmp.repeats}
    return spec


def options_for(ckpt: Checkpoint, **overrides: Any) -> ExportOptions:
    """Export options: the checkpoint's ``export`` config section, then non-``None`` ``overrides``."""
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
    _check_destination(Path(out_dir), True if options_overwrite is None else bool(options_overwrite))
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
    export_images = images_for_checkpoint(
        ckpt, Path(checkpoint), images, max_evaluation=max_evaluation, max_calibration=max_calibration
    )
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
