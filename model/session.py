"""The one ONNX Runtime session factory, shared by serving and by export's checks and timings.

Export measures parity and the INT8 speed-up with the session serving will run, so the figures
written into a bundle are the served ones. ``onnxruntime`` is imported inside the functions:
importing this module costs nothing, and training code that never builds a session never loads it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from model.bundle import INPUT_NAME

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime as ort


def default_threads() -> int:
    """Intra-op threads when none are configured: one per core."""
    return os.cpu_count() or 1


def make_session(model: str | os.PathLike[str] | bytes, threads: int = 0) -> ort.InferenceSession:
    """A CPU session as serving runs it.

    Idle worker threads sleep instead of spinning, leaving the cores to decoding; one
    inter-op thread and sequential execution, since the graph is a single chain of convolutions.

    Args:
        model: Path of an ``.onnx`` file, or its bytes (what was verified is what runs).
        threads: Intra-op threads; 0 = :func:`default_threads`.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads or default_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])


def run_batches(session: ort.InferenceSession, pixels: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """Run a session over ``(N, H, W, 3)`` uint8 photos; every output of its graph, by name, in input order.

    The names come from the graph: a bundle without flags has no flag outputs.
    """
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for i in range(0, len(pixels), batch):
        outs = session.run(names, {INPUT_NAME: np.ascontiguousarray(pixels[i : i + batch])})
        for name, value in zip(names, outs, strict=True):
            parts[name].append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}
