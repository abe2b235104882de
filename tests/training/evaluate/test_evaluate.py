"""``authlens evaluate``: report contents, linear probe, other manifests, refusals, the notebook."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import factories
import numpy as np
import pytest
import torch
from tinydata import make_dataset
from typer.testing import CliRunner

from authlens.cli import app
from model.imaging import Geometry
from model.network import pool_map
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.evaluate.localisation import localise
from training.evaluate.scores import operating_point
from training.metrics import metric
from training.train.run import run

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOK = ROOT / "notebooks" / "evaluation.ipynb"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny calibrated run (no final evaluation: the tests below run it)."""
    tmp = tmp_path_factory.mktemp("evalrun")
    manifest = make_dataset(tmp / "data", n=40, size=80, with_split=True)
    cfg = TrainConfig.model_validate(
        {
            "run": {"name": "tiny", "output_dir": str(tmp / "runs")},
            "data": {"manifest": str(manifest), "image_size": 64, "draft_size": 64, "num_workers": 0},
            "model": {"pretrained": "none"},
            "train": {"epochs": 1, "batch_size": 8, "threads": 2},
            "tracking": {"mlflow": False},
            "evaluate": {"after_training": False, "worst_errors": 4},
        }
    )
    return run(cfg, show_progress=False).best


def test_evaluate_val_split_with_probe_side_by_side(trained: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(trained), "--split", "val", "--probe"])
    assert result.exit_code == 0, result.output
    out = trained.parent / "eval-val"
    report = json.loads((out / "report.json").read_text())
    assert report["evaluated"]["split"] == "val" and report["summary"]["n"] == 8
    probe = report["probe"]
    assert probe["n_train"] == 24 and str(probe["C"]) in {"0.01", "0.1", "1.0", "10.0"}
    for key in ("roc_auc", "recall_at_far_1pct", "recall_at_far_5pct", "ece"):
        assert 0.0 <= probe[key] <= 1.0
        assert report["summary"][f"probe_{key}"] == probe[key]
    text = (out / "report.md").read_text()
    assert "| ROC-AUC |" in text and "linear probe" in text
    # every figure of the summary has its entry in the one table of metrics, and its title in report.md
    figures = [k for k, v in report["summary"].items() if not isinstance(v, str)]
    assert "probe_roc_auc" in figures and [k for k in figures if metric(k) is None] == []
    assert all(f"| {metric(k).title} |" in text for k in report["metrics"])
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("file,label,p_counterfeit,verdict")
    assert not (trained.parent / "report.json").exists()  # the test report is not overwritten


def test_evaluate_another_manifest_uses_every_photo(trained: Path, tmp_path: Path) -> None:
    fresh = make_dataset(tmp_path / "new", n=12, size=80, seed=5)
    result = CliRunner().invoke(
        app, ["evaluate", "--checkpoint", str(trained), "--manifest", str(fresh), "--no-probe"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((trained.parent / "eval-manifest" / "report.json").read_text())
    assert report["summary"]["n"] == 12 and report["probe"] is None
    assert report["evaluated"]["manifest"] == str(fresh)


def test_evaluate_refuses_training_state_and_foreign_weights(trained: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(trained.parent / "last.pt")])
    assert result.exit_code == 2 and "evaluate" in result.output and "best.pt" in result.output
    ckpt = load_checkpoint(trained)
    from model.network import AuthLensNet, NetworkSpec

    other = AuthLensNet(NetworkSpec(backbone="mobilenetv3_small_050", pretrained="none"))
    ckpt.state_dict = other.state_dict()
    save_checkpoint(tmp_path / "foreign.pt", ckpt)
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "foreign.pt")])
    assert result.exit_code == 2 and f"do not fit backbone '{ckpt.spec.backbone}'" in result.output
    assert "Traceback" not in result.output


def test_localisation_counts_the_peak_in_original_coordinates() -> None:
    cam = np.zeros((4, 4))
    cam[1, 2] = 5.0  # peak cell: x 64..96, y 32..64 of a 128 input
    g = Geometry(scale_x=2.0, scale_y=2.0, pad_x=0.0, pad_y=0.0, original_size=(256, 256))
    hit = localise(cam, g, (128, 128), [(150, 80, 170, 100)])  # contains the peak centre (160, 96)
    miss = localise(cam, g, (128, 128), [(0, 0, 60, 60)])
    assert hit["peak_in_box"] == 1.0 and miss["peak_in_box"] == 0.0
    assert miss["chance"] == pytest.approx(1 / 16)  # one cell centre (32, 32) of 16 inside
    near = localise(cam, g, (128, 128), [(120, 60, 130, 70)])  # touches the cell, not the centre
    assert near["peak_in_box"] == 0.0 and near["cell_overlaps_box"] == 1.0


def test_operating_point_counts_false_accusations_misses_and_inconclusive() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    verdicts = [
        "genuine",
        "genuine",
        "counterfeit",
        "inconclusive",
        "counterfeit",
        "counterfeit",
        "genuine",
        "inconclusive",
    ]
    op = operating_point(labels, verdicts)
    assert op["false_accusation_rate"] == 0.25 and op["counterfeit_recall"] == 0.5
    assert op["miss_rate"] == 0.25 and op["inconclusive_rate"] == 0.25
    assert op["accuracy_when_decided"] == pytest.approx(4 / 6)


def test_notebook_is_stripped_and_runs_headless_on_a_report(
    trained: Path, tmp_path: Path, monkeypatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), (
        "strip outputs before commit"
    )
    result = CliRunner().invoke(
        app, ["evaluate", "--checkpoint", str(trained), "--out", str(tmp_path / "rep")]
    )
    assert result.exit_code == 0, result.output
    # a kernel spec for this interpreter, so the notebook runs with the project's environment anywhere
    spec = tmp_path / "jupyter" / "kernels" / "authlens-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "authlens (test)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("AUTHLENS_REPORT", str(tmp_path / "rep" / "report.json"))
    client = NotebookClient(
        nb, kernel_name="authlens-test", timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = json.dumps([o.get("data", {}).get("text/plain", "") or o.get("text", "") for o in outputs])
    assert "roc_auc" in text and "linear probe" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # the report's plots


def test_cam_of_the_trained_model_is_exact(trained: Path) -> None:
    net = load_checkpoint(trained).build_network()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    pooled = pool_map(out["cam"], net.spec.pool, net.spec.pool_r)
    torch.testing.assert_close(pooled, out["counterfeit_logit"], rtol=1e-5, atol=1e-5)


def test_item_metrics_combine_photos_as_serving_does() -> None:
    from training.data.manifest import Record
    from training.evaluate.scores import item_metrics

    # item a (genuine): one photo looks fake, one clearly genuine; item b (fake): both look fake
    recs = [Record(Path(f"/x/{k}.jpg"), lab, item_id=i) for k, (lab, i) in enumerate(
        [("genuine", "a"), ("genuine", "a"), ("counterfeit", "b"), ("counterfeit", "b"), ("genuine", "c")]
    )]  # fmt: skip
    labels = np.array([0, 0, 1, 1, 0])
    p = np.array([0.7, 0.05, 0.8, 0.9, 0.2])
    decision = factories.decision(counterfeit_threshold=0.6, genuine_threshold=0.4)
    m = item_metrics(recs, labels, p, [(), (), (), ("too_blurry",), ()], decision, 15)
    assert m is not None and m["n"] == 3 and m["n_counterfeit"] == 1
    assert m["photos_per_item"] == {"1": 1, "2": 2}
    # a: mean logit of 0.7 and 0.05 -> below 0.4, genuine; b: only its usable photo (0.8) counts
    assert m["false_accusation_rate"] == 0.0 and m["counterfeit_recall"] == 1.0 and m["roc_auc"] == 1.0
    single = [Record(Path(f"/x/{k}.jpg"), "genuine", item_id=str(k)) for k in range(3)]
    assert item_metrics(single, np.zeros(3), np.zeros(3), [()] * 3, decision, 15) is None
