"""Section 1 of ``make bench``: the model alone, ONNX Runtime fp32 and INT8 vs PyTorch eager.

Every engine gets the same ``(B, H, W, 3)`` uint8 photos (the bundle's input; normalisation is in
the graph) and the same number of threads (one per core); runs alternate between engines so
that drift hits all alike; figures are medians. Two graphs: the bundle as it ships, and the same
architecture with ``ood_features="finetuned"`` (no second backbone pass for the OOD features).
ONNX Runtime is also timed on one thread at the largest batch: the CPU cost of a photo, from
which section 3 derives the compute limit.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import Bundle
from model.imaging import resize_for_model
from serving.bench import photo_pixels


def model_inputs(input_size: tuple[int, int], n: int) -> np.ndarray:
    """``(n, H, W, 3)`` uint8: distinct photo-like pictures resized to the model input."""
    return np.stack([resize_for_model(photo_pixels(320, 240, seed=i), input_size)[0] for i in range(n)])


def time_side_by_side(
    runners: dict[str, Callable[[np.ndarray], object]],
    x: np.ndarray,
    *,
    budget_s: float,
    min_runs: int = 5,
    warmup: int = 2,
) -> dict[str, float]:
    """Median ms of each runner on ``x``, alternating runners round by round for about
    ``budget_s`` seconds per runner (at least ``min_runs`` rounds)."""
    for run in runners.values():
        for _ in range(warmup):
            run(x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    start = time.perf_counter()
    while len(next(iter(times.values()))) < min_runs or time.perf_counter() - start < budget_s * len(runners):
        for name, run in runners.items():
            t = time.perf_counter()
            run(x)
            times[name].append((time.perf_counter() - t) * 1000)
    return {name: statistics.median(v) for name, v in times.items()}


def _ort_runner(path_or_bytes: Path | bytes, threads: int) -> Callable[[np.ndarray], object]:
    from model.bundle import INPUT_NAME
    from model.session import make_session

    session = make_session(path_or_bytes, threads)
    return lambda x: session.run(None, {INPUT_NAME: x})


def _eager_runner(graph: Any, threads: int) -> Callable[[np.ndarray], object]:
    import torch

    def run(x: np.ndarray) -> object:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return graph(torch.from_numpy(x))

    return run


def quantized(fp32: Path, out: Path, input_size: tuple[int, int]) -> Path:
    """INT8 graph of ``fp32`` with the project's settings, calibrated on 16 generated photos
    (for timing only: its accuracy is not measured)."""
    from training.export.quantize import quantize_int8

    quantize_int8(fp32, out, model_inputs(input_size, 16))
    return out


def parity(a: Callable[[np.ndarray], Any], b: Callable[[np.ndarray], Any], x: np.ndarray) -> float:
    """Largest ``|p_genuine_a - p_genuine_b|`` on ``x`` (the first output of both graphs)."""
    pa = np.asarray(a(x)[0], dtype=np.float64)
    pb = np.asarray(b(x)[0], dtype=np.float64)
    return float(np.abs(pa - pb).max())


def model_section(
    bundle: Bundle,
    *,
    weights: Path | None,
    threads: int,
    batches: tuple[int, ...],
    budget_s: float,
    finetuned: bool,
    work: Path,
    min_runs: int = 5,
) -> dict[str, Any]:
    """Per graph and engine, ms per batch and photos per second at each batch size; the one-thread
    CPU cost per photo; the INT8 speed-up and, when the bundle has INT8, its measured ROC-AUC."""
    import torch

    from benchmarks.subject import bundle_spec, eager_graph, variant_graph

    spec = bundle.manifest.input
    input_size = (spec.height, spec.width)
    big = max(batches)
    inputs = model_inputs(input_size, big)
    work.mkdir(parents=True, exist_ok=True)
    bundle_spec_ = bundle_spec(bundle)
    graphs: dict[str, dict[str, Any]] = {
        "bundle": {
            "ood_features": bundle_spec_.ood_features,
            "fp32": bundle.onnx_path(),
            "int8": bundle.onnx_path(int8=True) if bundle.manifest.int8 is not None else None,
            "int8_source": "bundle" if bundle.manifest.int8 is not None else "quantized by the harness",
            "eager": eager_graph(bundle, weights),
            "eager_weights": "the bundle's" if weights is not None else "random (same architecture)",
        }
    }
    if finetuned and bundle_spec_.ood_features != "finetuned":
        ft_spec, ft_path = variant_graph(bundle, work / "finetuned.onnx", ood_features="finetuned")
        graphs["finetuned_ood"] = {
            "ood_features": "finetuned",
            "fp32": ft_path,
            "int8": None,
            "int8_source": "quantized by the harness",
            "eager": eager_graph(bundle, None, ft_spec),
            "eager_weights": "random (same architecture)",
        }
    out: dict[str, Any] = {"threads": threads, "batches": list(batches), "graphs": {}}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for name, g in graphs.items():
            int8_path = g["int8"] or quantized(Path(g["fp32"]), Path(tmp) / f"{name}.int8.onnx", input_size)
            runners = {
                "onnxruntime_fp32": _ort_runner(Path(g["fp32"]), threads),
                "onnxruntime_int8": _ort_runner(int8_path, threads),
                "pytorch_eager": _eager_runner(g["eager"], threads),
            }
            rows: dict[str, dict[str, Any]] = {engine: {} for engine in runners}
            for b in batches:
                ms = time_side_by_side(runners, inputs[:b], budget_s=budget_s, min_runs=min_runs)
                for engine, v in ms.items():
                    rows[engine][f"batch{b}_ms"] = round(v, 2)
                    rows[engine][f"batch{b}_photos_per_s"] = round(1000 * b / v, 1)
            one = time_side_by_side(
                {
                    "onnxruntime_fp32": _ort_runner(Path(g["fp32"]), 1),
                    "onnxruntime_int8": _ort_runner(int8_path, 1),
                },
                inputs[:big],
                budget_s=budget_s,
                min_runs=min(3, min_runs),
            )
            for engine, v in one.items():
                rows[engine]["one_thread_ms_per_photo"] = round(v / big, 2)
            fp32, int8, eager = (rows[k][f"batch{big}_ms"] for k in runners)
            entry: dict[str, Any] = {
                "ood_features": g["ood_features"],
                "backbone_passes": 2 if g["ood_features"] == "imagenet" else 1,
                "int8_source": g["int8_source"],
                "eager_weights": g["eager_weights"],
                "engines": rows,
                f"int8_speedup_batch{big}": round(fp32 / int8, 2),
                f"ort_fp32_vs_eager_batch{big}": round(eager / fp32, 2),
            }
            if g["eager_weights"] == "the bundle's":
                entry["parity_eager_vs_ort_fp32"] = parity(
                    runners["pytorch_eager"], runners["onnxruntime_fp32"], inputs[:big]
                )
            out["graphs"][name] = entry
    int8_spec = bundle.manifest.int8
    if int8_spec is not None:
        out["int8_accuracy"] = {
            "roc_auc_fp32": int8_spec.roc_auc_fp32,
            "roc_auc_int8": int8_spec.roc_auc_int8,
            "auc_loss": round(int8_spec.roc_auc_fp32 - int8_spec.roc_auc_int8, 4),
            "evaluation_images": int8_spec.evaluation_images,
            "source": "bundle.json int8 (measured at export on held-out photos)",
        }
    else:
        out["int8_accuracy"] = None
    torch.set_num_threads(threads)
    return out
