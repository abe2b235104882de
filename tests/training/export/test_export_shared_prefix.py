"""Export of a network whose frozen prefix both backbones share (configs/sneakers.yaml freezes
``conv_stem, bn1, blocks.0, blocks.1``): the graph computes that prefix once, gives the outputs of
the two-pass graph, passes parity, and quantizes with the heads and the embedding kept float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from factories import tiny_checkpoint
from torch import nn

from model.bundle import INT8_FILE, MODEL_FILE, load_bundle
from model.network import AuthLensNet
from model.session import make_session, run_batches
from training.checkpoint import Checkpoint
from training.data.photos import ExportImages
from training.export.bundle import export_bundle
from training.export.graph import export_onnx
from training.export.options import ExportOptions

PREFIX = ("conv_stem", "bn1", "blocks.0", "blocks.1")


@pytest.fixture(scope="module")
def frozen_ckpt(ckpt: Checkpoint) -> Checkpoint:
    c = tiny_checkpoint(64, freeze=PREFIX)
    c.data = dict(ckpt.data)
    return c


def _convs(path: Path) -> int:
    return sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node)


def test_the_graph_shares_the_prefix_and_equals_the_two_pass_graph(
    frozen_ckpt: Checkpoint, images: ExportImages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared.onnx"
    export_onnx(frozen_ckpt, shared)
    with monkeypatch.context() as m:
        m.setattr(AuthLensNet, "shared_steps", lambda self: 0)
        export_onnx(frozen_ckpt, tmp_path / "two-pass.onnx")
    # one convolution per Conv2d of the backbone, of the reference after the prefix, and 2 heads
    net = frozen_ckpt.build_network()
    assert net.reference is not None and net.shared_steps() == 4
    after = [
        m
        for name in ("blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6", "conv_head")
        for m in net.reference.get_submodule(name).modules()
        if isinstance(m, nn.Conv2d)
    ]
    backbone = [m for m in net.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert _convs(shared) == len(backbone) + len(after) + 2 < _convs(tmp_path / "two-pass.onnx")
    pixels = images.evaluation.pixels
    a = run_batches(make_session(shared), pixels, batch=8)
    b = run_batches(make_session(tmp_path / "two-pass.onnx"), pixels, batch=8)
    for name in b:
        assert np.abs(a[name] - b[name]).max() <= 1e-6, name


def test_the_shared_bundle_passes_parity_and_keeps_heads_float_in_int8(
    frozen_ckpt: Checkpoint, images: ExportImages, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    options = ExportOptions(int8=True, max_auc_drop=1.0, latency_repeats=2)
    export_bundle(frozen_ckpt, out, name="tiny", version="shared", images=images, options=options)
    bundle = load_bundle(out, strict=True)
    assert bundle.manifest.parity is not None and bundle.manifest.parity.max_abs_diff <= 1e-4
    spec = bundle.manifest.int8
    assert spec is not None
    graph = onnx.load(str(out / INT8_FILE)).graph
    excluded = set(spec.excluded_nodes)
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    heads = [n for n in graph.node if n.op_type == "Conv" and n.name in excluded]
    assert len(heads) == 2 and all(n.input[1] not in dequantized for n in heads)
    backbone = [n for n in graph.node if n.op_type == "Conv" and n not in heads]
    assert len(backbone) == _convs(out / MODEL_FILE) - 2 and all(n.input[1] in dequantized for n in backbone)
    pools = [n for n in graph.node if n.op_type in ("ReduceMean", "GlobalAveragePool") and n.name in excluded]
    assert pools  # the embedding's pooling stays float
    ref = run_batches(make_session(out / MODEL_FILE), images.evaluation.pixels)
    got = run_batches(make_session(bundle.onnx_path(int8=True)), images.evaluation.pixels)
    assert np.abs(got["p_genuine"] - ref["p_genuine"]).max() < 0.1
