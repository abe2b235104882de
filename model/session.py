"""The one ONNX Runtime session factory, shared by serving and by export's checks and timings.

Export measures parity and the INT8 speed-up with the session serving will run, so the figures
written into a bundle are the served ones. ``onnxruntime`` is imported inside the functions:
importing this module costs nothing, and training code that never builds a session never loads it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.bundle import INPUT_NAME, BundleError

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


# ONNX protobuf field numbers (onnx/onnx.proto3) on the paths that can hold a TensorProto.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_FUNCTION_NODE, _FUNCTION_ATTRIBUTE = 7, 11
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_EXTERNAL = 1
_MAX_NESTING = 64


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise BundleError("model graph: not a valid ONNX protobuf (truncated varint).")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """``(field number, wire type, value)`` of one protobuf message; length-delimited values as views."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield number, wire, value
        elif wire == 1:
            i += 8
        elif wire == 2:
            length, i = _varint(buf, i)
            if i + length > len(buf):
                raise BundleError("model graph: not a valid ONNX protobuf (field runs past the end).")
            yield number, wire, buf[i : i + length]
            i += length
        elif wire == 5:
            i += 4
        else:
            raise BundleError(f"model graph: not a valid ONNX protobuf (wire type {wire}).")
    if i != len(buf):
        raise BundleError("model graph: not a valid ONNX protobuf (truncated).")


def _tensor_locations(buf: memoryview) -> list[str]:
    external = False
    location = ""
    for number, wire, value in _fields(buf):
        if number == _TENSOR_DATA_LOCATION and wire == 0:
            external = value == _EXTERNAL
        elif number == _TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
            entry = {n: bytes(v) for n, w, v in _fields(value) if isinstance(v, memoryview)}
            if entry.get(1) == b"location":
                location = entry.get(2, b"").decode("utf-8", "replace")
    return [location] if external else []


# message kind -> {field number: kind of the sub-message}
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {_MODEL_GRAPH: "graph", _MODEL_FUNCTIONS: "function"},
    "graph": {_GRAPH_NODE: "node", _GRAPH_INITIALIZER: "tensor", _GRAPH_SPARSE_INITIALIZER: "sparse"},
    "function": {_FUNCTION_NODE: "node", _FUNCTION_ATTRIBUTE: "attribute"},
    "node": {_NODE_ATTRIBUTE: "attribute"},
    "attribute": {
        _ATTR_T: "tensor",
        _ATTR_G: "graph",
        _ATTR_TENSORS: "tensor",
        _ATTR_GRAPHS: "graph",
        _ATTR_SPARSE: "sparse",
        _ATTR_SPARSES: "sparse",
    },
    "sparse": {_SPARSE_VALUES: "tensor", _SPARSE_INDICES: "tensor"},
}


def external_data_locations(model: bytes) -> list[str]:
    """Where an ONNX model's tensors keep their data outside the model bytes (``location`` of every
    tensor stored as ``EXTERNAL``, in initializers, attributes, subgraphs and functions).

    ONNX Runtime resolves such a location against the model's directory, or, for a model given as
    bytes, against the *current directory*: data nobody hashed. Reading the protobuf ourselves
    (no ``onnx`` dependency in serving) lets the loader refuse or pin it first.

    Raises:
        BundleError: the bytes are not a well-formed ONNX protobuf.
    """
    found: list[str] = []

    def walk(buf: memoryview, kind: str, depth: int) -> None:
        if depth > _MAX_NESTING:
            raise BundleError(f"model graph: subgraphs nested deeper than {_MAX_NESTING}.")
        if kind == "tensor":
            found.extend(_tensor_locations(buf))
            return
        children = _SCHEMA[kind]
        for number, _wire, value in _fields(buf):
            sub = children.get(number)
            if sub is not None and isinstance(value, memoryview):
                walk(value, sub, depth + 1)

    walk(memoryview(model), "model", 0)
    return found


def session_from_verified(
    model: bytes, files: Mapping[str, bytes], threads: int = 0, *, what: str = "model"
) -> ort.InferenceSession:
    """A session from bytes that were hashed, never from a path that could change after hashing.

    A graph without external data loads from ``model`` directly. External data must be listed:
    each location must be a plain name in ``files`` (verified bytes); the graph and those files are
    then written to a private temporary directory (mode 700), loaded from there and deleted.

    Args:
        model: The verified graph.
        files: Verified bytes of the bundle's other listed files, by name.
        threads: Intra-op threads (0 = one per core).
        what: The graph's name in error messages.

    Raises:
        BundleError: external data that is not listed (or not a plain name).
    """
    locations = sorted(set(external_data_locations(model)))
    if not locations:
        return make_session(model, threads)
    unlisted = [
        loc for loc in locations if loc not in files or "/" in loc or "\\" in loc or loc.startswith(".")
    ]
    if unlisted:
        raise BundleError(
            f"{what}: the graph keeps tensor data in files bundle.json does not list with a checksum: "
            f"{', '.join(repr(u) for u in unlisted[:5])}; external data is refused unless listed and hashed."
        )
    with tempfile.TemporaryDirectory(prefix="authlens-graph-") as tmp:  # mkdtemp: mode 700
        root = Path(tmp)
        for name in locations:
            (root / name).write_bytes(files[name])
        graph = root / "model.onnx"
        graph.write_bytes(model)
        return make_session(graph, threads)
