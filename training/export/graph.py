"""The exported graph: :class:`model.network.ServingGraph` to ONNX, its contract check and parity.

The serving graph takes uint8 NHWC photos and does normalisation and temperature inside; it is
exported with a dynamic batch axis, checked by ``onnx.checker`` and against the I/O contract of
:mod:`model.bundle`, then compared with torch on real photos through ONNX Runtime. It carries the
checkpoint's trained flags only (:func:`model.bundle.trained_flags`); a model trained without flag
labels has no flag outputs (:func:`model.bundle.output_names`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import FLAG_OUTPUTS, INPUT_NAME, output_names, trained_flags
from model.flags import FLAG_INDEX, FLAG_NAMES
from training.checkpoint import Checkpoint, CheckpointError
from training.data.photos import ImageSet
from training.export.options import DEFAULT_OPSET, DEFAULT_PARITY_TOLERANCE, ExportError

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
PROBABILITY_OUTPUTS: tuple[str, ...] = ("p_genuine", "flag_probs")
_OUTPUT_RANKS = {"p_genuine": 1, "flag_probs": 2, "cam": 3, "flag_maps": 4, "embedding": 2}
_EXPORTER_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo")


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Raise chatty loggers to WARNING for the duration (``""`` is the root logger).

    The exporter logs one INFO line per folded initializer, ONNX Runtime's quantizer one per
    rescaled bias; their levels are restored on exit.

    Args:
        *names: Logger names.
    """
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def checkpoint_flags(ckpt: Checkpoint) -> tuple[str, ...]:
    """The flags a checkpoint's bundle carries: those its decision has thresholds for (the trained
    flags), in :data:`model.flags.FLAG_NAMES` order; empty when trained without flag labels.

    Raises:
        CheckpointError: the checkpoint is not calibrated, or a threshold names an unknown flag.
    """
    if ckpt.decision is None:
        raise CheckpointError("The checkpoint has no decision settings; it was not calibrated.")
    try:
        return trained_flags(ckpt.decision)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def serving_graph(ckpt: Checkpoint):  # -> model.network.ServingGraph
    """The network as it is exported: uint8 NHWC in, the checkpoint's temperature inside, and the
    checkpoint's trained flags only (none: no flag outputs).

    Args:
        ckpt: A calibrated checkpoint.

    Raises:
        CheckpointError: the checkpoint is not calibrated.
    """
    from model.network import ServingGraph

    flags = checkpoint_flags(ckpt)
    assert ckpt.decision is not None  # checkpoint_flags refused otherwise
    net = ckpt.build_network()
    indices = [FLAG_INDEX[name] for name in flags]
    return ServingGraph(net, temperature=ckpt.decision.temperature, flags=indices).eval()


def export_onnx(ckpt: Checkpoint, path: Path, *, opset: int = DEFAULT_OPSET) -> int:
    """Write the serving graph (uint8 NHWC in, calibrated outputs) with a dynamic batch axis.

    Args:
        ckpt: A calibrated checkpoint.
        path: The ``.onnx`` file to write.
        opset: The ONNX opset wanted.

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
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), quiet_loggers(*_EXPORTER_LOGGERS):
            program = torch.onnx.export(
                graph,
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(graph.output_names),
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


def check_graph(path: Path, *, opset: int, flags: Sequence[str] = FLAG_NAMES) -> None:
    """``onnx.checker`` full check plus the bundle's I/O contract (names, dtypes, ranks, batch axis).

    The outputs must be those the bundle will list, :func:`model.bundle.output_names` of
    ``flags``, with one flag channel per flag.

    Args:
        path: The exported graph.
        opset: The opset it must have at least (and at least 17).
        flags: The flags the bundle lists (none: the graph must have no flag outputs).

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
    expected = list(output_names(bool(flags)))
    if outputs != expected:
        raise ExportError(
            f"{path.name}: outputs {outputs}, expected {expected} for {len(flags)} flag(s) {list(flags)}."
        )
    for o in m.graph.output:
        t = o.type.tensor_type
        rank = len(t.shape.dim)
        if t.elem_type != onnx.TensorProto.FLOAT or rank != _OUTPUT_RANKS[o.name]:
            raise ExportError(
                f"{path.name}: output {o.name} has type {t.elem_type} and rank {rank}, "
                f"expected float32 of rank {_OUTPUT_RANKS[o.name]}."
            )
        channels = t.shape.dim[1].dim_value if o.name in FLAG_OUTPUTS else None
        if channels and channels != len(flags):
            raise ExportError(f"{path.name}: output {o.name} has {channels} flags, expected {len(flags)}.")


def _compare_batches(
    graph: Any, session: Any, pixels: np.ndarray, batch: int, batch_sizes: set[int]
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Largest |ORT - torch| of every output the graph has over ``pixels`` in batches, and ORT's first batch."""
    import torch

    names: tuple[str, ...] = graph.output_names
    diffs = dict.fromkeys(names, 0.0)
    first: dict[str, np.ndarray] = {}
    for start in range(0, len(pixels), batch):
        chunk = np.ascontiguousarray(pixels[start : start + batch])
        got = session.run(list(names), {INPUT_NAME: chunk})
        batch_sizes.add(len(chunk))
        with torch.no_grad():
            want = [t.numpy() for t in graph(torch.from_numpy(chunk))]
        for name, g, w in zip(names, got, want, strict=True):
            if g.shape != w.shape:
                raise ExportError(
                    f"Parity: output {name} has shape {g.shape} in ONNX Runtime, {w.shape} in torch."
                )
            gap = float(np.abs(g.astype(np.float64) - w).max())
            diffs[name] = max(diffs[name], gap if math.isfinite(gap) else math.inf)  # NaN must fail
        if start == 0:
            first = dict(zip(names, got, strict=True))
    return diffs, first


def _check_batch_of_one(
    session: Any, pixels: np.ndarray, first: dict[str, np.ndarray], *, batch: int, tolerance: float
) -> None:
    """Dynamic batch: the first photo alone must give what it gave inside the first batch."""
    names = list(first)
    single = session.run(names, {INPUT_NAME: np.ascontiguousarray(pixels[:1])})
    for name, value in zip(names, single, strict=True):
        if value.shape[0] != 1:
            raise ExportError(
                f"Parity: batch 1 gave {name} of shape {value.shape}; the batch axis is not dynamic."
            )
        gap = float(np.abs(value[0] - first[name][0]).max())
        if name in PROBABILITY_OUTPUTS and not gap <= tolerance:
            raise ExportError(
                f"Parity: {name} of one photo differs by {gap:.3g} between batch 1 and batch "
                f"{min(batch, len(pixels))} (tolerance {tolerance:g})."
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

    Every output the graph has is compared (no flag outputs for a model without flags).

    Args:
        ckpt: The checkpoint the graph was exported from.
        onnx_path: The exported graph.
        images: The photos compared.
        tolerance: Largest allowed |ORT - torch| of the probabilities.
        batch: Photos per batch N.

    Returns:
        The :class:`model.bundle.ParityReport` fields, plus ``_map_size``, ``_embedding_dim`` and
        ``_onnxruntime`` for the caller to take out.

    Raises:
        ExportError: the probabilities differ by more than ``tolerance`` (the message gives the
            figure and the output), or batch 1 and batch N disagree, or an output has the wrong shape.
    """
    import onnxruntime as ort

    from model.session import make_session

    graph = serving_graph(ckpt)
    session = make_session(onnx_path)
    n = len(images.pixels)
    batch_sizes: set[int] = set()
    diffs, first = _compare_batches(graph, session, images.pixels, batch, batch_sizes)
    batch_sizes.add(1)
    _check_batch_of_one(session, images.pixels, first, batch=batch, tolerance=tolerance)
    broken = [k for k, v in diffs.items() if not math.isfinite(v)]
    if broken:
        raise ExportError(f"Parity failed: ONNX Runtime gives NaN or infinity in {', '.join(broken)}.")
    worst_name = max((k for k in PROBABILITY_OUTPUTS if k in diffs), key=lambda k: diffs[k])
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
