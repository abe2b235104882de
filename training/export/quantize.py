"""Static INT8 quantization of the serving graph, and the fp32-vs-INT8 comparison export reports.

Choices, measured on a sneakers model (efficientnet_lite0, 224 px) on this project's 2-core AMD
EPYC with AVX512-VNNI: 330 held-out photos, 128 training photos to calibrate; the table is in
``docs/export.md``.

* **Per-channel weights.** Per-tensor scales dropped ROC-AUC by 0.09 (0.894 -> 0.803) and moved
  p_genuine by up to 0.83; per-channel kept AUC within 0.001. EfficientNet's depthwise
  convolutions have per-channel weight ranges that one scale per tensor cannot cover.
* **Unsigned activations, signed weights (U8S8).** Same accuracy as S8S8 (ONNX Runtime's QDQ
  default), but S8S8 ran no faster than fp32 here while U8S8 ran ~1.5x faster: x86's VNNI
  instruction multiplies u8 by s8. On x86 CPUs *without* VNNI, ORT warns U8S8 may saturate;
  check the INT8 figures on such a serving machine before using the INT8 model there.
* **QDQ, not QOperator.** Same accuracy and speed here (U8S8); QDQ is ONNX Runtime's recommended
  format and the one other execution providers (TensorRT, OpenVINO) consume. QOperator with
  S8S8 was 3-4x *slower* than fp32.
* **Float heads.** Everything downstream of the last feature map stays float: the pooling that
  makes the ``embedding`` (OOD statistics were fitted on float embeddings), the authenticity and
  flag heads, their 1x1 map convolutions, temperature and sigmoids; so is the input
  normalisation before the first convolution. Quantizing them too changed neither AUC nor speed
  measurably (they are ~0.01% of the MACs), so the float version is kept for its exactness.
* **MinMax calibration.** Percentile calibration gave the same AUC (0.893 vs 0.894) at 7x the
  calibration time; ReLU6 bounds most activations, which is what outlier-robust methods help with.

What INT8 still changes: the last feature map carries ~9 dB SQNR of quantization noise after 49
quantized convolutions, so individual probabilities move (mean |dp| ~0.03 on sneakers) and a few
photos near a threshold change verdict; export records both figures next to AUC and ECE.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from model.bundle import INPUT_NAME, Decision
from model.decision import classify
from model.ood import OODStats
from model.session import make_session, run_batches
from training.config import EvaluateConfig
from training.export.graph import quiet_loggers
from training.metrics import reliability

log = logging.getLogger(__name__)

QuantFormatName = Literal["QDQ", "QOperator"]
CalibrationMethodName = Literal["minmax", "percentile", "entropy"]
QUANT_FORMATS: tuple[str, ...] = ("QDQ", "QOperator")
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy")

ECE_BINS: int = EvaluateConfig.model_fields["ece_bins"].default  # the evaluation report's binning


class QuantizationError(RuntimeError):
    """INT8 quantization that cannot be done or trusted; the message says why."""


@dataclass(frozen=True)
class QuantSettings:
    """How the INT8 graph is made (defaults chosen on evidence, see the module docstring).

    Attributes:
        quant_format: ``QDQ`` or ``QOperator``.
        per_channel: One weight scale per output channel instead of per tensor.
        calibration_method: ``minmax``, ``percentile`` or ``entropy``.
        float_heads: Keep everything downstream of the last feature map (and the input
            normalisation) in float.
        activation_signed: Signed (S8S8) rather than unsigned (U8S8) activations.
        calibration_batch: Photos per calibration batch.
    """

    quant_format: QuantFormatName = "QDQ"
    per_channel: bool = True
    calibration_method: CalibrationMethodName = "minmax"
    float_heads: bool = True
    activation_signed: bool = False
    calibration_batch: int = 16

    def __post_init__(self) -> None:
        if self.quant_format not in QUANT_FORMATS:
            raise ValueError(
                f"Unknown quant_format {self.quant_format!r}. Allowed: {', '.join(QUANT_FORMATS)}."
            )
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"Unknown calibration_method {self.calibration_method!r}. "
                f"Allowed: {', '.join(CALIBRATION_METHODS)}."
            )
        if self.calibration_batch < 1:
            raise ValueError(f"calibration_batch must be at least 1, got {self.calibration_batch}.")


@dataclass(frozen=True)
class QuantResult:
    """What :func:`quantize_int8` did."""

    path: Path
    excluded_nodes: tuple[str, ...]
    calibration_images: int
    settings: QuantSettings


@dataclass(frozen=True)
class Int8Comparison:
    """fp32 and INT8 on the same labelled photos and the same batches, in one run.

    Attributes:
        roc_auc_fp32, roc_auc_int8: ROC-AUC of the counterfeit probability (counterfeit = positive).
        ece_fp32, ece_int8: Expected calibration error of the counterfeit probability
            (:data:`ECE_BINS` equal-width bins).
        max_abs_diff_p_genuine: Largest ``|p_int8 - p_fp32|`` over the photos.
        max_abs_diff_flag_probs: The same for the flag probabilities; ``None`` for a graph
            without flag outputs (a model trained without flag labels).
        mean_abs_diff_p_genuine: Mean ``|p_int8 - p_fp32|``.
        ood_flips: Photos on which the out-of-distribution test disagrees.
        verdict_flips: Photos whose genuine/inconclusive/counterfeit verdict (thresholds only,
            no usability checks) differs; ``None`` when no thresholds were given.
        latency_ms_fp32, latency_ms_int8: Median wall time of one batch.
        batch_size: Photos per timed batch.
        repeats: Timed runs of each model (alternating).
        images: Labelled photos compared.
    """

    roc_auc_fp32: float
    roc_auc_int8: float
    ece_fp32: float
    ece_int8: float
    max_abs_diff_p_genuine: float
    max_abs_diff_flag_probs: float | None
    ood_flips: int
    latency_ms_fp32: float
    latency_ms_int8: float
    batch_size: int
    repeats: int
    images: int
    size_bytes_fp32: int = 0
    size_bytes_int8: int = 0
    mean_abs_diff_p_genuine: float = 0.0
    verdict_flips: int | None = None
    latencies_fp32: tuple[float, ...] = field(default=(), repr=False)
    latencies_int8: tuple[float, ...] = field(default=(), repr=False)

    @property
    def auc_drop(self) -> float:
        """``roc_auc_fp32 - roc_auc_int8`` (positive = INT8 is worse)."""
        return self.roc_auc_fp32 - self.roc_auc_int8

    @property
    def speedup(self) -> float:
        """fp32 latency / INT8 latency for the same batch."""
        return self.latency_ms_fp32 / self.latency_ms_int8


def float_node_names(model_path: Path) -> tuple[str, ...]:
    """Nodes kept in float: the input normalisation and everything after the last feature maps.

    Found from the graph's structure, not from exporter-specific node names: the heads' feature
    map is the input of the 1x1 convolution that makes ``cam``; the embedding's is the input of
    the global-average pooling (``ReduceMean``/``GlobalAveragePool``) that makes ``embedding``
    (the same map, or a frozen reference backbone's). Every node that consumes either, directly
    or not, stays float. The input normalisation is every node between ``pixels`` and the first
    convolution.

    Raises:
        QuantizationError: the graph does not have the serving graph's shape.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    nodes = list(graph.node)
    consumers: dict[str, list[int]] = {}
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
        for name in node.output:
            producer[name] = i
    pool = _walk_back(nodes, producer, "embedding", ("ReduceMean", "GlobalAveragePool"))
    head = _walk_back(nodes, producer, "cam", ("Conv",))
    if pool is None or head is None:
        raise QuantizationError(
            f"{model_path}: no pooling before 'embedding' or head convolution before 'cam'."
        )
    heads = _downstream(nodes, consumers, nodes[pool].input[0]) | _downstream(
        nodes, consumers, nodes[head].input[0]
    )
    front = _downstream(nodes, consumers, INPUT_NAME, stop_at="Conv")
    return tuple(nodes[i].name for i in sorted(heads | front))


def _walk_back(nodes: list, producer: dict[str, int], output: str, ops: tuple[str, ...]) -> int | None:
    """Index of the first ``ops`` node met walking back from ``output`` along first inputs."""
    current = output
    for _ in range(len(nodes)):
        i = producer.get(current)
        if i is None:
            return None
        if nodes[i].op_type in ops:
            return i
        current = nodes[i].input[0]
    return None


def _downstream(nodes: list, consumers: dict[str, list[int]], tensor: str, *, stop_at: str = "") -> set[int]:
    """Indices of the nodes fed by ``tensor``, directly or not, not walking into ``stop_at`` nodes."""
    found: set[int] = set()
    frontier = [tensor]
    while frontier:
        for i in consumers.get(frontier.pop(), []):
            if i in found or nodes[i].op_type == stop_at:
                continue
            found.add(i)
            frontier.extend(nodes[i].output)
    return found


class _PixelReader:
    """Feeds calibration photos to ONNX Runtime's calibrator in fixed-size batches."""

    def __init__(self, pixels: np.ndarray, batch: int) -> None:
        self._batches: Iterator[np.ndarray] = (pixels[i : i + batch] for i in range(0, len(pixels), batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}

    def __iter__(self) -> _PixelReader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    calibration: np.ndarray,
    settings: QuantSettings | None = None,
) -> QuantResult:
    """Statically quantize ``fp32_path`` into ``out_path``, calibrated on ``calibration`` photos.

    Args:
        fp32_path: The exported float graph.
        out_path: Where the INT8 graph is written.
        calibration: ``(N, H, W, 3)`` uint8 model-input photos, N >= 1 (training photos).
        settings: Format, granularity, calibration method and float nodes.

    Raises:
        QuantizationError: no calibration photos, or ONNX Runtime's quantizer failed.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    settings = settings or QuantSettings()
    if (
        calibration.ndim != 4
        or calibration.shape[-1] != 3
        or calibration.dtype != np.uint8
        or not len(calibration)
    ):
        raise QuantizationError(
            f"INT8 calibration needs (N, H, W, 3) uint8 photos with N >= 1, got {calibration.dtype} "
            f"{calibration.shape}."
        )
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    # ORT's quantizer logs one INFO line per rescaled bias on the root logger.
    with tempfile.TemporaryDirectory(prefix="authlens-quant-") as tmp, quiet_loggers("", "onnxruntime"):
        prepared = Path(tmp) / "prepared.onnx"
        act = QuantType.QInt8 if settings.activation_signed else QuantType.QUInt8
        try:
            # Shape inference and ORT's graph optimisations first, as ONNX Runtime recommends.
            # ONNX's own shape inference: the graph's shapes are static but for the batch, and
            # ORT's symbolic pass cannot follow the opset-18 reductions of the LSE pooling.
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            excluded = float_node_names(prepared) if settings.float_heads else ()
            quantize_static(
                str(prepared),
                str(out_path),
                _PixelReader(calibration, settings.calibration_batch),
                quant_format=QuantFormat.QDQ if settings.quant_format == "QDQ" else QuantFormat.QOperator,
                per_channel=settings.per_channel,
                activation_type=act,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(excluded),
                calibrate_method=methods[settings.calibration_method],
                calibration_providers=["CPUExecutionProvider"],
                extra_options={"CalibTensorRangeSymmetric": False, "CalibMovingAverage": False},
            )
        except (RuntimeError, ValueError, KeyError) as exc:
            raise QuantizationError(f"ONNX Runtime could not quantize {fp32_path.name}: {exc}") from None
    return QuantResult(
        path=out_path, excluded_nodes=excluded, calibration_images=len(calibration), settings=settings
    )


def time_side_by_side(
    sessions: dict[str, object], batch: np.ndarray, *, repeats: int = 10, warmup: int = 2
) -> dict[str, list[float]]:
    """Milliseconds per run of each session on the same batch, alternating so drift hits all alike."""
    feed = {INPUT_NAME: np.ascontiguousarray(batch)}
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)  # type: ignore[attr-defined]
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def _max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray], name: str) -> float | None:
    """Largest ``|a - b|`` of one output; ``None`` when the graphs do not have it."""
    if name not in a or name not in b:
        return None
    return float(np.abs(a[name] - b[name]).max()) if a[name].size else 0.0


def verdict_flips(p_a: np.ndarray, p_b: np.ndarray, decision: Decision) -> int:
    """Photos whose verdict (:func:`model.decision.classify`, thresholds only) differs between two
    sets of counterfeit probabilities of the same photos."""
    return sum(
        classify(float(a), decision).verdict != classify(float(b), decision).verdict
        for a, b in zip(p_a, p_b, strict=True)
    )


def compare_int8(
    fp32_path: Path,
    int8_path: Path,
    pixels: np.ndarray,
    labels: np.ndarray,
    *,
    ood: OODStats,
    ood_threshold: float,
    batch_size: int = 8,
    repeats: int = 10,
    decision: Decision | None = None,
) -> Int8Comparison:
    """Score the same labelled photos with both graphs and time them side by side.

    Args:
        fp32_path, int8_path: The two graphs.
        pixels: ``(N, H, W, 3)`` uint8 held-out photos.
        labels: ``(N,)`` 1 = counterfeit, 0 = genuine; both classes must be present.
        ood: The bundle's OOD statistics, to count flipped out-of-distribution verdicts.
        ood_threshold: The bundle's OOD threshold.
        batch_size: Photos per timed batch (the first ``batch_size`` photos, repeated if fewer).
        repeats: Timed runs of each graph.
        decision: The bundle's decision settings, to count verdict flips (thresholds only).

    Raises:
        QuantizationError: labels of one class only (ROC-AUC undefined).
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels).astype(int)
    if len(np.unique(y)) != 2:
        raise QuantizationError(
            f"The INT8 AUC check needs genuine and counterfeit photos; got {len(y)} photos of one class."
        )
    fp32, int8 = make_session(fp32_path), make_session(int8_path)
    out_f, out_q = run_batches(fp32, pixels), run_batches(int8, pixels)
    if set(out_f) != set(out_q):
        raise QuantizationError(f"The INT8 graph has outputs {sorted(out_q)}, the fp32 one {sorted(out_f)}.")
    pc_f, pc_q = 1.0 - out_f["p_genuine"], 1.0 - out_q["p_genuine"]
    ood_f = ood.score(out_f["embedding"]) > ood_threshold
    ood_q = ood.score(out_q["embedding"]) > ood_threshold
    flips = None if decision is None else verdict_flips(pc_f, pc_q, decision)
    reps = int(np.ceil(batch_size / len(pixels)))
    batch = np.concatenate([pixels] * reps)[:batch_size]
    times = time_side_by_side({"fp32": fp32, "int8": int8}, batch, repeats=repeats)
    return Int8Comparison(
        roc_auc_fp32=float(roc_auc_score(y, pc_f)),
        roc_auc_int8=float(roc_auc_score(y, pc_q)),
        ece_fp32=reliability(pc_f, y, ECE_BINS).ece,
        ece_int8=reliability(pc_q, y, ECE_BINS).ece,
        max_abs_diff_p_genuine=float(np.abs(out_f["p_genuine"] - out_q["p_genuine"]).max()),
        max_abs_diff_flag_probs=_max_abs_diff(out_f, out_q, "flag_probs"),
        ood_flips=int((ood_f != ood_q).sum()),
        latency_ms_fp32=statistics.median(times["fp32"]),
        latency_ms_int8=statistics.median(times["int8"]),
        batch_size=batch_size,
        repeats=repeats,
        images=len(pixels),
        size_bytes_fp32=fp32_path.stat().st_size,
        size_bytes_int8=int8_path.stat().st_size,
        mean_abs_diff_p_genuine=float(np.abs(out_f["p_genuine"] - out_q["p_genuine"]).mean()),
        verdict_flips=flips,
        latencies_fp32=tuple(times["fp32"]),
        latencies_int8=tuple(times["int8"]),
    )
