"""Writing a bundle (:mod:`training.export.bundle`): parity on real photos, INT8 with its gate,
atomic writing and the destination rules.

A handful of exports are shared through module-scoped fixtures.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from model.bundle import CARD_FILE, INT8_FILE, MODEL_FILE, load_bundle
from model.session import make_session, run_batches
from training.checkpoint import Checkpoint
from training.data.photos import ExportImages
from training.export.bundle import check_auc_drop, export_bundle
from training.export.options import ExportError, ExportOptions, ExportSummary


@pytest.fixture(scope="module")
def int8_export(
    ckpt: Checkpoint, images: ExportImages, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ExportSummary]:
    """fp32 + INT8 bundle of the tiny model (the AUC gate is opened: random weights, 16 photos)."""
    summary = ExportSummary()
    out = tmp_path_factory.mktemp("int8") / "bundle"
    options = ExportOptions(int8=True, max_auc_drop=1.0, latency_repeats=2)
    export_bundle(ckpt, out, name="tiny", version="int8", images=images, options=options, summary=summary)
    return out, summary


def test_export_checks_graph_and_parity_on_real_photos(int8_export: tuple[Path, ExportSummary]) -> None:
    out, _ = int8_export
    bundle = load_bundle(out, strict=True)
    parity = bundle.manifest.parity
    assert parity is not None
    assert parity.max_abs_diff <= parity.tolerance == 1e-4
    assert parity.images == 16 and "split.csv" in parity.image_source
    assert 1 in parity.batch_sizes and max(parity.batch_sizes) > 1
    m = onnx.load(str(out / MODEL_FILE))
    onnx.checker.check_model(m, full_check=True)
    assert next(o.version for o in m.opset_import if o.domain == "") >= 17
    assert bundle.manifest.provenance.opset is not None and bundle.manifest.provenance.opset >= 17
    assert bundle.manifest.map_size == (2, 2)  # 64 px / 32
    # The batch axis is dynamic: any batch size runs and gives per-photo results.
    session = make_session(out / MODEL_FILE)
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    p3 = session.run(["p_genuine"], {"pixels": x})[0]
    p1 = session.run(["p_genuine"], {"pixels": x[2:]})[0]
    assert p3.shape == (3,) and abs(float(p3[2] - p1[0])) < 1e-5


def test_int8_bundle_loads_runs_close_to_fp32_and_keeps_heads_float(
    int8_export: tuple[Path, ExportSummary], images: ExportImages
) -> None:
    out, summary = int8_export
    bundle = load_bundle(out, strict=True)
    spec = bundle.manifest.int8
    assert spec is not None and INT8_FILE in bundle.manifest.files
    assert spec.calibration_images == 12 and spec.evaluation_images == 16
    assert spec.speedup > 0 and spec.latency_ms_int8 and spec.size_bytes_int8 < spec.size_bytes_fp32 / 2
    assert not spec.auc_drop_allowed and spec.quant_format == "QDQ" and spec.per_channel
    ref = run_batches(make_session(out / MODEL_FILE), images.evaluation.pixels)
    got = run_batches(make_session(bundle.onnx_path(int8=True)), images.evaluation.pixels)
    assert np.abs(got["p_genuine"] - ref["p_genuine"]).max() < 0.1
    assert np.abs(got["p_genuine"] - ref["p_genuine"]).max() == pytest.approx(
        spec.max_abs_diff_p_genuine, abs=1e-6
    )
    graph = onnx.load(str(out / INT8_FILE)).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 20
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    # The two heads are 1x1 convolutions over the last feature map; they stay float.
    heads = [n for n in graph.node if n.op_type == "Conv" and n.name in set(spec.excluded_nodes)]
    assert len(heads) == 2 and all(n.input[1] not in dequantized for n in heads)
    backbone = [n for n in graph.node if n.op_type == "Conv" and n not in heads]
    assert len(backbone) > 20 and all(n.input[1] in dequantized for n in backbone)
    assert summary.int8 is not None and summary.int8["verdict_flips"] is not None
    card = (out / CARD_FILE).read_text()
    assert "INT8" in card and "ROC-AUC" in card


def test_a_failed_export_leaves_the_previous_bundle_untouched(
    ckpt: Checkpoint, images: ExportImages, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    out = Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))
    before = load_bundle(out).sha256
    # A tolerance below float32 rounding: ORT and torch differ by ~1e-7, so parity must fail.
    impossible = ExportOptions(parity_tolerance=1e-12)
    with pytest.raises(ExportError, match=r"Parity failed: .* \(tolerance 1e-12\)"):
        export_bundle(ckpt, out, images=images, options=impossible)
    assert load_bundle(out, strict=True).sha256 == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging directory left behind


def test_destination_rules(ckpt: Checkpoint, tiny_bundle_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty and holds no bundle"):
        export_bundle(ckpt, other)
    assert (other / "keep.txt").read_text() == "mine"
    existing = Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))
    with pytest.raises(ExportError, match="already holds a bundle; pass --force"):
        export_bundle(ckpt, existing, options=ExportOptions(overwrite=False))
    with pytest.raises(ExportError, match="INT8 needs real photos"):
        export_bundle(ckpt, tmp_path / "new", options=ExportOptions(int8=True))


def test_auc_gate() -> None:
    assert check_auc_drop(0.95, 0.945, max_drop=0.01, allow=False) is None
    assert check_auc_drop(0.95, 0.96, max_drop=0.0, allow=False) is None
    with pytest.raises(
        ExportError, match=r"lowers ROC-AUC by 0\.0300 \(0\.9500 -> 0\.9200\).*--allow-auc-drop"
    ):
        check_auc_drop(0.95, 0.92, max_drop=0.01, allow=False)
    warning = check_auc_drop(0.95, 0.92, max_drop=0.01, allow=True)
    assert warning is not None and "kept because --allow-auc-drop" in warning
