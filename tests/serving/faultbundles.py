"""Bundles that fail in the ways the reliability issue lists, made at test time from a good one.

Each writes a complete, re-sealed bundle (checksums and ``content_sha256`` recomputed by
:func:`model.bundle.write_bundle`) unless the fault *is* a checksum, so what fails is the fault
itself and not the seal:

* :func:`wrong_checksum`: ``SHA256SUMS`` disagrees with a file.
* :func:`wrong_width`: ``bundle.json`` lists fewer flags than the graph's flag outputs have.
* :func:`external_data`: the graph keeps its weights in a side file, listed and hashed or not;
  :func:`escaping_external_data` names one outside the bundle (``../weights.bin``).
* :func:`hanging`: warm-up never ends (an ONNX ``Loop`` of 10**12 iterations).
* :func:`poisoned`: ONNX Runtime fails on any photo whose top-left pixel is bright (a ``Gather``
  index out of bounds), so one image can make a batch fail.
* :func:`stalling`: the model call never returns for such a photo (a ``Loop`` whose trip count
  comes from that pixel), which leaves the batcher stuck.

The graph edits need the ``onnx`` package (installed with the ``train`` extra, never by serving).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import CARD_FILE, MANIFEST_NAME, MODEL_FILE, SUMS_FILE, load_bundle, write_bundle

BRIGHT = 200  # a photo whose top-left red value exceeds this triggers poisoned and stalling graphs


def _manifest_fields(directory: Path) -> dict[str, Any]:
    data = json.loads((directory / MANIFEST_NAME).read_text())
    for key in ("files", "schema_version", "content_sha256"):
        data.pop(key, None)
    return data


def reseal(
    src: Path,
    dst: Path,
    *,
    graph: bytes | None = None,
    change: Callable[[dict[str, Any]], None] | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Copy ``src`` to ``dst`` with a new graph, manifest changes and extra listed files, sealed."""
    shutil.copytree(src, dst)
    fields = _manifest_fields(dst)
    if change is not None:
        change(fields)
    if graph is not None:
        (dst / MODEL_FILE).write_bytes(graph)
    for name, data in (extra or {}).items():
        (dst / name).write_bytes(data)
    (dst / MANIFEST_NAME).unlink()
    (dst / SUMS_FILE).unlink()
    write_bundle(dst, manifest_fields=fields, extra_files=(CARD_FILE, *(extra or {})), strict=False)
    return dst


def wrong_checksum(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    sums = dst / SUMS_FILE
    lines = sums.read_text().splitlines()
    lines = [("0" * 64 + line[64:]) if line.endswith(MODEL_FILE) else line for line in lines]
    sums.write_text("\n".join(lines) + "\n")
    return dst


def wrong_width(src: Path, dst: Path) -> Path:
    """bundle.json keeps the first three flags; the graph still outputs all of them."""

    def fewer(fields: dict[str, Any]) -> None:
        keep = list(fields["flags"])[:3]
        fields["untrained_flags"] = sorted(set(fields.get("untrained_flags", [])) | set(fields["flags"][3:]))
        fields["flags"] = keep
        fields["decision"]["flag_thresholds"] = {f: fields["decision"]["flag_thresholds"][f] for f in keep}
        from model.flags import FLAG_NAMES

        fields["untrained_flags"] = [f for f in FLAG_NAMES if f in fields["untrained_flags"]]

    return reseal(src, dst, change=fewer)


def external_data(src: Path, dst: Path, *, listed: bool, location: str = "weights.bin") -> Path:
    """The graph's initializers moved to ``location``; listed (and hashed) in bundle.json or not."""
    import onnx

    model = onnx.load(str(src / MODEL_FILE))
    tmp = dst.parent / f".{dst.name}-graph"
    tmp.mkdir(parents=True)
    onnx.save_model(
        model, str(tmp / "g.onnx"), save_as_external_data=True, location=location, size_threshold=1024
    )
    graph = (tmp / "g.onnx").read_bytes()
    side = (tmp / location).read_bytes() if "/" not in location else b""
    shutil.rmtree(tmp)
    out = reseal(src, dst, graph=graph, extra={location: side} if listed else None)
    if not listed and "/" not in location:
        (dst / location).write_bytes(side)  # present in the directory, never listed
    return out


def escaping_external_data(src: Path, dst: Path) -> Path:
    """Like a listed :func:`external_data` bundle, but the graph names ``../weights.bin``."""
    import onnx

    external_data(src, dst, listed=True)
    model = onnx.load(str(dst / MODEL_FILE), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    shutil.copy2(dst / "weights.bin", dst.parent / "weights.bin")
    (dst / MANIFEST_NAME).unlink()
    (dst / SUMS_FILE).unlink()
    fields = _manifest_fields_from(src)
    (dst / MODEL_FILE).write_bytes(model.SerializeToString())
    write_bundle(dst, manifest_fields=fields, extra_files=(CARD_FILE, "weights.bin"), strict=False)
    return dst


def _manifest_fields_from(src: Path) -> dict[str, Any]:
    return _manifest_fields(src)


def _graph(src: Path) -> Any:
    import onnx

    return onnx.load(str(src / MODEL_FILE))


def _rewire_p_genuine(model: Any, extra_nodes: list[Any], term: str) -> bytes:
    """p_genuine := p_genuine + ``term`` (a value that is 0 whenever the graph returns at all)."""
    from onnx import helper

    g = model.graph
    for node in g.node:
        node.output[:] = ["p_genuine_raw" if o == "p_genuine" else o for o in node.output]
    g.node.extend([*extra_nodes, helper.make_node("Add", ["p_genuine_raw", term], ["p_genuine"])])
    return model.SerializeToString()


def _top_left_red(prefix: str) -> tuple[list[Any], str]:
    """Nodes computing the first photo's top-left red value as float ``prefix_v`` (scalar)."""
    from onnx import TensorProto, helper, numpy_helper

    consts = [
        numpy_helper.from_array(np.array([0, 0, 0, 0], np.int64), f"{prefix}_starts"),
        numpy_helper.from_array(np.array([1, 1, 1, 1], np.int64), f"{prefix}_ends"),
    ]
    nodes = [
        helper.make_node("Constant", [], [f"{prefix}_s"], value=consts[0]),
        helper.make_node("Constant", [], [f"{prefix}_e"], value=consts[1]),
        helper.make_node("Slice", ["pixels", f"{prefix}_s", f"{prefix}_e"], [f"{prefix}_px"]),
        helper.make_node("Cast", [f"{prefix}_px"], [f"{prefix}_pxf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", [f"{prefix}_pxf"], [f"{prefix}_v"], keepdims=0),
    ]
    return nodes, f"{prefix}_v"


def _loop(prefix: str, trips: str) -> tuple[list[Any], str]:
    """A Loop of ``trips`` (int64 scalar) iterations adding 1.0; returns nodes and a 0.0 output."""
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node(
                "Constant", [], ["one"], value=numpy_helper.from_array(np.array(1.0, np.float32))
            ),
            helper.make_node("Add", ["v_in", "one"], ["v_out"]),
        ],
        f"{prefix}_body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, []),
        ],
    )
    nodes = [
        helper.make_node("Constant", [], [f"{prefix}_cond"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node(
            "Constant", [], [f"{prefix}_v0"], value=numpy_helper.from_array(np.array(0.0, np.float32))
        ),
        helper.make_node("Loop", [trips, f"{prefix}_cond", f"{prefix}_v0"], [f"{prefix}_v"], body=body),
        helper.make_node(
            "Constant", [], [f"{prefix}_zero"], value=numpy_helper.from_array(np.array(0.0, np.float32))
        ),
        helper.make_node("Mul", [f"{prefix}_v", f"{prefix}_zero"], [f"{prefix}_term"]),
    ]
    return nodes, f"{prefix}_term"


def hanging(src: Path, dst: Path) -> Path:
    """Every run of the graph loops 10**12 times: loading may pass, the warm-up never ends."""
    from onnx import helper, numpy_helper

    trips = helper.make_node(
        "Constant", [], ["hang_m"], value=numpy_helper.from_array(np.array(10**12, np.int64))
    )
    nodes, term = _loop("hang", "hang_m")
    return reseal(src, dst, graph=_rewire_p_genuine(_graph(src), [trips, *nodes], term))


def stalling(src: Path, dst: Path) -> Path:
    """The model call never returns for a photo whose top-left red value exceeds :data:`BRIGHT`."""
    from onnx import TensorProto, helper, numpy_helper

    red, v = _top_left_red("stall")
    nodes = [
        *red,
        helper.make_node(
            "Constant", [], ["stall_t"], value=numpy_helper.from_array(np.array(float(BRIGHT), np.float32))
        ),
        helper.make_node("Greater", [v, "stall_t"], ["stall_b"]),
        helper.make_node("Cast", ["stall_b"], ["stall_i"], to=TensorProto.INT64),
        helper.make_node(
            "Constant", [], ["stall_big"], value=numpy_helper.from_array(np.array(10**12, np.int64))
        ),
        helper.make_node("Mul", ["stall_i", "stall_big"], ["stall_m"]),
    ]
    loop, term = _loop("stall_loop", "stall_m")
    return reseal(src, dst, graph=_rewire_p_genuine(_graph(src), [*nodes, *loop], term))


def poisoned(src: Path, dst: Path) -> Path:
    """ONNX Runtime raises (Gather index out of bounds) when a photo's top-left red value exceeds
    :data:`BRIGHT`; other photos score as before."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node(
            "Constant", [], ["poison_s"], value=numpy_helper.from_array(np.array([0, 0, 0, 0], np.int64))
        ),
        helper.make_node(
            "Constant", [], ["poison_e"], value=numpy_helper.from_array(np.array([2**62, 1, 1, 1], np.int64))
        ),
        helper.make_node("Slice", ["pixels", "poison_s", "poison_e"], ["poison_px"]),  # (B, 1, 1, 1)
        helper.make_node(
            "Constant", [], ["poison_shape"], value=numpy_helper.from_array(np.array([-1], np.int64))
        ),
        helper.make_node("Reshape", ["poison_px", "poison_shape"], ["poison_flat"]),  # (B,)
        helper.make_node("Cast", ["poison_flat"], ["poison_idx"], to=TensorProto.INT64),
        helper.make_node(
            "Constant", [], ["poison_table"], value=numpy_helper.from_array(np.zeros(BRIGHT + 1, np.float32))
        ),
        helper.make_node(
            "Gather", ["poison_table", "poison_idx"], ["poison_term"]
        ),  # (B,), fails past BRIGHT
    ]
    return reseal(src, dst, graph=_rewire_p_genuine(_graph(src), nodes, "poison_term"))


def bright_jpeg(width: int = 200, height: int = 150) -> bytes:
    """A photo that triggers :func:`poisoned` and :func:`stalling` graphs (white top-left)."""
    import io

    from factories import jpeg_bytes
    from PIL import Image

    img = Image.open(io.BytesIO(jpeg_bytes(width, height)))
    img.paste((255, 255, 255), (0, 0, width // 4, height // 4))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def assert_loads(directory: Path) -> None:
    load_bundle(directory)
