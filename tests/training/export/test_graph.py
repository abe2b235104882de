"""The exported graph (:mod:`training.export.graph`): parity with torch catches a tampered graph."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from training.checkpoint import Checkpoint
from training.data.photos import ExportImages
from training.export.graph import check_parity, export_onnx
from training.export.options import ExportError


def test_a_tampered_graph_fails_parity(ckpt: Checkpoint, images: ExportImages, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    export_onnx(ckpt, path)
    parity = check_parity(ckpt, path, images.evaluation)
    assert parity["max_abs_diff"] <= 1e-4
    m = onnx.load(str(path))
    weight = next(t for t in m.graph.initializer if len(t.dims) == 4 and t.dims[0] > 8)
    array = onnx.numpy_helper.to_array(weight) * 1.5
    weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
    onnx.save(m, str(path))
    with pytest.raises(ExportError, match="Parity failed: ONNX Runtime and torch differ by"):
        check_parity(ckpt, path, images.evaluation)
