"""K-fold cross-fitting end to end on a tiny photo set: folds, out-of-fold report, final model, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from test_run import tiny_config, write_config
from tinydata import make_dataset
from typer.testing import CliRunner

from authlens.cli import app
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data.dataset import DataError
from training.data.manifest import load_manifest
from training.train.crossfit import assign_folds


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), n=40, size=80)


@pytest.fixture(scope="module")
def crossfit(tmp_path_factory: pytest.TempPathFactory, manifest: Path):
    tmp = tmp_path_factory.mktemp("cf")
    cfg = tiny_config(
        tmp,
        manifest,
        data={"folds": 3},
        train={"linear_probe_init": True, "layer_decay": 0.8},
        tracking={"mlflow": False},
        calibration={"min_flag_positives": 1, "flag_precision": 0.5},
    )
    path = write_config(tmp, cfg)
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    return tmp, path, tmp / "runs" / "tiny", result.output


def test_every_photo_is_held_out_once_and_groups_stay_together(manifest: Path) -> None:
    records = load_manifest(manifest)
    groups = np.arange(len(records)) // 2  # pairs of photos that must not straddle folds
    folds = assign_folds(records, groups, 4, seed=0)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3]
    assert all(folds[2 * i] == folds[2 * i + 1] for i in range(len(records) // 2))
    labels = np.array([r.label for r in records])
    for f in range(4):
        assert {"genuine", "counterfeit"} <= set(labels[folds == f].tolist())


def test_more_folds_than_clusters_of_a_class_is_refused_naming_both(manifest: Path) -> None:
    records = load_manifest(manifest)
    groups = np.array([0 if r.label == "genuine" else 1 + i for i, r in enumerate(records)])
    with pytest.raises(DataError, match=r"data\.folds is 3, but the genuine photos form only 1 clusters"):
        assign_folds(records, groups, 3, seed=0)


def test_crossfit_writes_folds_report_and_a_calibrated_final_model(crossfit) -> None:
    _, _, run_dir, output = crossfit
    rows = list(csv.DictReader((run_dir / "folds.csv").open()))
    assert len(rows) == 40 and {r["fold"] for r in rows} == {"0", "1", "2"}
    for i in range(3):
        assert (run_dir / f"fold{i}" / "oof.npz").is_file()
    best = load_checkpoint(run_dir / "best.pt")
    final = load_checkpoint(run_dir / "full" / "best.pt")
    assert best.decision is not None and best.ood is not None and best.ood.stats.method == "knn"
    assert all(np.array_equal(best.state_dict[k], final.state_dict[k]) for k in final.state_dict)
    assert best.data["n_train"] == 40 and best.data["folds"] == 3
    report = json.loads((run_dir / "report.json").read_text())
    s = report["summary"]
    assert s["n"] == 40 and s["folds"] == 3 and 0 <= s["roc_auc"] <= 1
    assert len(report["folds"]["per_fold"]) == 3 and sum(f["n"] for f in report["folds"]["per_fold"]) == 40
    assert 0 <= s["false_accusation_bound"] <= 1
    assert "out of fold: ROC-AUC" in output
    # the tiny set labels color_shift on every fake: it is trained, and the bundle's flags are the trained ones
    assert "color_shift" in best.decision.flag_thresholds
    assert set(best.decision.flag_thresholds) <= {"color_shift", "stitch_irregular"}


def test_resume_reuses_finished_folds(crossfit) -> None:
    _, path, run_dir, _ = crossfit
    before = (run_dir / "fold1" / "oof.npz").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--resume", "last", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "fold1" / "oof.npz").stat().st_mtime_ns == before
    again = CliRunner().invoke(app, ["train", "--config", str(path), "--no-progress"])
    assert again.exit_code == 2 and "already holds a run" in again.output


def test_a_fold_count_of_one_is_refused() -> None:
    with pytest.raises(ValueError, match="folds must be 0"):
        TrainConfig.model_validate({"data": {"manifest": "m.csv", "folds": 1}})
