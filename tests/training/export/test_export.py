"""Export: parity on real photos, INT8 with its gate, atomic writing, metrics and card, CLI errors.

Tiny random-weight efficientnet_lite0 checkpoints at 64 px and a few real sneakers photos keep
this fast; a handful of exports are shared through module-scoped fixtures.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from factories import tiny_checkpoint
from typer.testing import CliRunner

from model.bundle import CARD_FILE, INT8_FILE, MODEL_FILE, load_bundle
from model.session import make_session, run_batches
from authlens.cli import app
from training.checkpoint import Checkpoint, save_checkpoint
from training.data.manifest import load_manifest, write_manifest
from training.export.model_card import describe_data
from training.export.run import (
    ExportError,
    ExportImages,
    ExportOptions,
    ExportSummary,
    check_auc_drop,
    check_parity,
    collect_metrics,
    export_bundle,
    export_onnx,
    images_from_manifest,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def photo_manifest(sneakers_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """28 real sneakers photos with a split column: 12 train, 8 val, 8 test, both labels in each."""
    records = load_manifest(sneakers_dir)
    splits = ["train"] * 6 + ["val"] * 4 + ["test"] * 4
    chosen = []
    for label in ("genuine", "counterfeit"):
        pool = [r for r in records if r.label == label]
        chosen += [dataclasses.replace(r, split=s) for r, s in zip(pool, splits, strict=False)]
    path = tmp_path_factory.mktemp("photos") / "split.csv"
    write_manifest(chosen, path)
    return path


@pytest.fixture(scope="module")
def ckpt(photo_manifest: Path, sneakers_dir: Path) -> Checkpoint:
    c = tiny_checkpoint(64)
    c.data = {
        "manifest": str(sneakers_dir),
        "split_manifest": str(photo_manifest),
        "manifest_hash": "1" * 64,
        "n_train": 12,
        "n_val": 8,
        "n_test": 8,
    }
    return c


@pytest.fixture(scope="module")
def images(ckpt: Checkpoint, photo_manifest: Path) -> ExportImages:
    return images_from_manifest(photo_manifest, ckpt)


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


def test_images_come_from_the_held_out_and_training_splits(images: ExportImages) -> None:
    assert len(images.evaluation) == 16 and "test+val" in images.evaluation.source
    assert images.calibration is not None and len(images.calibration) == 12
    assert images.evaluation.pixels.shape[1:] == (64, 64, 3) and images.evaluation.pixels.dtype == np.uint8
    assert images.evaluation.labels is not None and set(images.evaluation.labels.tolist()) == {0, 1}


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


def test_metrics_come_from_the_report_read_defensively(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(64)
    ckpt.metrics = {"val_roc_auc": 0.9, "val_loss": float("nan")}
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(
            {
                "summary": {
                    "roc_auc": 0.97,
                    "ece": 0.02,
                    "n": 100,
                    "probe_roc_auc": 0.81,
                    "evaluated": "test",
                },
                "probe": {"roc_auc": 0.8, "pr_auc": 0.7, "val_roc_auc_by_C": {"1.0": 0.8}},
                "checkpoint": {"epoch": ckpt.epoch},
                "breakdowns": {"af1": {"roc_auc": 0.5}},
            }
        )
    )
    m = collect_metrics(ckpt, report)
    assert m["source"] == "report.json" and m["roc_auc"] == 0.97 and m["n"] == 100
    assert m["linear_probe"] == {"roc_auc": 0.8, "pr_auc": 0.7}  # the section wins over summary copies
    assert "probe_roc_auc" not in m and "breakdowns" not in m
    assert m["checkpoint"] == {"val_roc_auc": 0.9, "val_loss": None}
    warnings: list[str] = []
    stale = json.loads(report.read_text())
    stale["checkpoint"]["epoch"] = ckpt.epoch + 3
    report.write_text(json.dumps(stale))
    m = collect_metrics(ckpt, report, warnings)
    assert m["source"] == "checkpoint" and "roc_auc" not in m and "stale" in warnings[0]
    report.write_text("[1, 2")
    assert collect_metrics(ckpt, report)["source"] == "checkpoint"


def test_training_data_licence_is_found(sneakers_dir: Path, tmp_path: Path) -> None:
    assert "CC BY 4.0" in describe_data(str(sneakers_dir / "manifest.csv")).text
    (tmp_path / "DATASET_CARD.md").write_text(
        "# Demo\n\nGenerated by authlens data synth.\nLicence: Apache-2.0.\n"
    )
    text = describe_data(str(tmp_path / "manifest.csv")).text
    assert "Licence: Apache-2.0." in text and "DATASET_CARD.md" in text
    assert "not documented" in describe_data(str(tmp_path / "sub" / "m.csv")).text
    (tmp_path / "syn").mkdir()
    (tmp_path / "syn" / "contact_sheet.png").write_bytes(b"")
    assert "authlens data synth" in describe_data(str(tmp_path / "syn" / "manifest.csv")).text


# ----------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authlens", "export", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_missing_checkpoint_is_one_clear_line(tmp_path: Path) -> None:
    result = _cli("--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope.pt does not exist" in lines[0]


def test_cli_checkpoint_of_another_architecture_is_one_clear_line(tmp_path: Path) -> None:
    from model.network import AuthLensNet, NetworkSpec

    foreign = tiny_checkpoint(64)
    other = AuthLensNet(NetworkSpec(backbone="mobilenetv3_small_050", pretrained="none"))
    foreign.state_dict = other.state_dict()  # recorded as efficientnet_lite0, weights of another network
    save_checkpoint(tmp_path / "foreign.pt", foreign)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    for name, expected in (
        ("foreign.pt", "do not fit backbone 'efficientnet_lite0'"),
        ("junk.pt", "is not a readable checkpoint"),
    ):
        result = _cli("--checkpoint", str(tmp_path / name), "--out", str(tmp_path / "b"))
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "b").exists()


def test_cli_exports_with_the_runs_photos_and_report(ckpt: Checkpoint, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = dataclasses.replace(ckpt, epoch=4, config={"run": {"name": "shoes"}})
    save_checkpoint(run / "best.pt", ckpt)
    (run / "report.json").write_text(
        json.dumps({"summary": {"roc_auc": 0.91}, "probe": {"roc_auc": 0.77}, "checkpoint": {"epoch": 4}})
    )
    out = tmp_path / "bundles" / "shoes"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(run / "best.pt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max |ORT - torch|" in result.stdout
    bundle = load_bundle(out, strict=True)
    assert (bundle.manifest.name, bundle.manifest.version) == ("shoes", "epoch4")
    assert (
        bundle.manifest.metrics["roc_auc"] == 0.91
        and bundle.manifest.metrics["linear_probe"]["roc_auc"] == 0.77
    )
    assert bundle.manifest.provenance.checkpoint_sha256 is not None
    card = (out / CARD_FILE).read_text()
    assert "| ROC-AUC | 0.9100 | 0.7700 |" in card and "CC BY 4.0" in card
    again = CliRunner().invoke(app, ["export", "--checkpoint", str(run / "best.pt"), "--out", str(out)])
    assert again.exit_code == 2 and "already holds a bundle; pass --force" in again.output
