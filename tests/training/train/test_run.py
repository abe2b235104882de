"""End-to-end training on a tiny photo set: outputs, exact resume, tracking, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tinydata import make_dataset
from typer.testing import CliRunner

from authlens.cli import app
from model.configio import load_config
from model.flags import FLAG_NAMES
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data.manifest import load_manifest
from training.train.run import run


def tiny_config(tmp: Path, manifest: Path, **sections: dict) -> dict:
    cfg = {
        "run": {"name": "tiny", "output_dir": str(tmp / "runs"), "seed": 0},
        "data": {"manifest": str(manifest), "image_size": 64, "draft_size": 64, "num_workers": 0},
        "model": {"pretrained": "none", "drop_rate": 0.2},
        "train": {"epochs": 2, "batch_size": 8, "threads": 2, "warmup_epochs": 0.5},
        "tracking": {"tracking_uri": str(tmp / "mlruns"), "experiment": "tests"},
        "evaluate": {"probe": False, "worst_errors": 4},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


def write_config(tmp: Path, cfg: dict) -> Path:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), n=40, size=80, with_split=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_manifest: Path):
    """One complete run through the CLI: train, calibrate, evaluate, track."""
    tmp = tmp_path_factory.mktemp("run")
    path = write_config(tmp, tiny_config(tmp, tiny_manifest))
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    return tmp, tmp / "runs" / "tiny"


def test_run_writes_config_split_checkpoints_and_report(finished) -> None:
    _, run_dir = finished
    for name in (
        "config.yaml",
        "split.csv",
        "best.pt",
        "last.pt",
        "history.json",
        "report.json",
        "report.md",
    ):
        assert (run_dir / name).is_file(), name
    for plot in ("roc", "reliability", "confusion", "worst_errors"):
        assert (run_dir / "plots" / f"{plot}.png").stat().st_size > 1000
    saved = load_config(TrainConfig, run_dir / "config.yaml")
    assert saved.train.epochs == 2 and saved.model.pretrained == "none"
    assert len(json.loads((run_dir / "history.json").read_text())) == 2


def test_best_checkpoint_is_calibrated_and_names_its_data(finished) -> None:
    _, run_dir = finished
    best = load_checkpoint(run_dir / "best.pt")
    assert best.train_state is None and best.ood is not None
    cal = best.decision
    assert 0 <= cal.genuine_threshold <= cal.counterfeit_threshold <= 1 and cal.temperature > 0
    # only flags the training photos labelled can be kept (the tiny set labels two of the seven)
    assert set(cal.flag_thresholds) <= {"color_shift", "stitch_irregular"} < set(FLAG_NAMES)
    # too_blurry: below the sharpness of the blurriest 0.5 % of training photos (fitted, not 0)
    assert cal.min_sharpness > 0
    assert best.ood.stats.method == "knn" and best.ood.stats.reference.shape == (best.data["n_train"], 1280)
    data = best.data
    assert (data["n_train"], data["n_val"], data["n_test"]) == (24, 8, 8)
    split = load_manifest(data["split_manifest"])
    assert sum(r.split == "test" for r in split) == data["n_test"]
    assert len(data["manifest_hash"]) == 64 and Path(data["manifest"]).is_file()
    net = best.build_network()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 64, 64))
    assert out["cam"].shape == (1, 2, 2)


def test_report_has_every_figure_the_issue_names(finished) -> None:
    _, run_dir = finished
    report = json.loads((run_dir / "report.json").read_text())
    s = report["summary"]
    for key in (
        "roc_auc",
        "pr_auc",
        "accuracy",
        "recall_at_far_1pct",
        "recall_at_far_5pct",
        "ece",
        "ece_uncalibrated",
        "inconclusive_rate",
        "flag_macro_f1",
        "localisation_peak_in_box",
    ):
        assert key in s, key
    assert s["n"] == 8 and s["n_counterfeit"] == 4
    assert report["breakdowns"]["brand"].keys() == {"acme", "globex"}
    assert report["localisation"]["target"] == "tell" and report["localisation"]["n"] == 4
    assert report["flags"]["labelled_photos"] == 8
    assert 0.0 <= s["inconclusive_rate"] <= 1.0
    text = (run_dir / "report.md").read_text()
    assert "linear probe" in text and "## Flags" in text


def test_mlflow_recorded_params_metrics_per_epoch_and_artifacts(finished) -> None:
    tmp, _ = finished
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("tests")
    (mlrun,) = client.search_runs([exp.experiment_id])
    assert mlrun.data.params["train.epochs"] == "2"
    history = client.get_metric_history(mlrun.info.run_id, "val_auc")
    assert [m.step for m in history] == [1, 2]
    assert "test_roc_auc" in mlrun.data.metrics and mlrun.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id, "evaluation")}
    assert "evaluation/report.json" in artifacts


def test_resume_continues_exactly(tmp_path: Path, tiny_manifest: Path) -> None:
    """Two epochs straight == one epoch, 'interrupted', then resumed for the second."""
    base = tiny_config(
        tmp_path, tiny_manifest, evaluate={"after_training": False}, tracking={"mlflow": False}
    )
    straight = TrainConfig.model_validate({**base, "run": {**base["run"], "name": "straight"}})
    broken = TrainConfig.model_validate({**base, "run": {**base["run"], "name": "broken"}})
    run(straight, show_progress=False)
    first = run(broken, stop_after=1, show_progress=False)
    assert load_checkpoint(first.last).epoch == 1
    assert not load_checkpoint(first.best).ood  # interrupted: best.pt not calibrated yet
    run(broken, resume=True, show_progress=False)
    a = load_checkpoint(tmp_path / "runs" / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "runs" / "broken" / "last.pt")
    assert a.epoch == b.epoch == 2
    for key, tensor in a.train_state["model"].items():
        assert torch.equal(tensor, b.train_state["model"][key]), key
    for key, tensor in a.state_dict.items():
        assert torch.equal(tensor, b.state_dict[key]), key
    assert np.isclose(
        a.train_state["run_state"]["history"][-1]["train_loss"],
        b.train_state["run_state"]["history"][-1]["train_loss"],
    )


# ----------------------------------------------------------------------------- bad input


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_unknown_config_key_is_named(tmp_path: Path, tiny_manifest: Path) -> None:
    cfg = tiny_config(tmp_path, tiny_manifest, train={"epochz": 3})
    result = _cli("train", "--config", str(write_config(tmp_path, cfg)))
    assert result.exit_code == 2
    assert "train.epochz: unknown key" in result.output and "epochs" in result.output
    assert not (tmp_path / "runs").exists()


def test_one_class_dataset_stops_before_training(tmp_path: Path, tiny_manifest: Path) -> None:
    lines = tiny_manifest.read_text().splitlines()
    only_genuine = [lines[0]] + [line for line in lines[1:] if ",genuine," in line]
    one = tiny_manifest.parent / "genuine_only.csv"
    one.write_text("\n".join(only_genuine) + "\n")
    result = _cli("train", "--config", str(write_config(tmp_path, tiny_config(tmp_path, one))))
    assert result.exit_code == 2
    assert "only genuine photos" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs" / "tiny" / "last.pt").exists()


def test_empty_split_stops_before_training(tmp_path: Path, tiny_manifest: Path) -> None:
    text = tiny_manifest.read_text().replace(",test,", ",train,").replace(",test\n", ",train\n")
    no_test = tiny_manifest.parent / "no_test.csv"
    no_test.write_text(text)
    result = _cli("train", "--config", str(write_config(tmp_path, tiny_config(tmp_path, no_test))))
    assert result.exit_code == 2
    assert "test split is empty" in result.output and "evaluate.after_training=false" in result.output


def test_checkpoint_from_another_architecture_is_refused(
    finished, tmp_path: Path, tiny_manifest: Path
) -> None:
    _, run_dir = finished
    cfg = tiny_config(tmp_path, tiny_manifest, model={"backbone": "mobilenetv3_small_050"})
    result = _cli("train", "--config", str(write_config(tmp_path, cfg)), "--resume", str(run_dir / "last.pt"))
    assert result.exit_code == 2
    assert "another architecture" in result.output and "efficientnet_lite0" in result.output
    assert "mobilenetv3_small_050" in result.output
    cfg = tiny_config(tmp_path, tiny_manifest, model={"freeze": ["conv_stem"]})
    result = _cli("train", "--config", str(write_config(tmp_path, cfg)), "--resume", str(run_dir / "last.pt"))
    assert result.exit_code == 2 and "frozen parts [] (config: ['conv_stem'])" in result.output


def test_checkpoints_from_before_configurable_pooling_load_as_mean_pooled(finished, tmp_path: Path) -> None:
    _, run_dir = finished
    raw = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
    for key in ("pool", "pool_r", "freeze"):
        raw["spec"].pop(key)
    torch.save(raw, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").spec.pool == "mean"


def test_image_size_must_be_a_multiple_of_the_stride(tmp_path: Path, tiny_manifest: Path) -> None:
    cfg = tiny_config(tmp_path, tiny_manifest)
    result = _cli("train", "--config", str(write_config(tmp_path, cfg)), "--set", "data.image_size=240")
    assert result.exit_code == 2 and "image_size" in result.output and "multiple of 32" in result.output


def test_existing_run_is_not_overwritten_silently(finished) -> None:
    tmp, _ = finished
    result = _cli("train", "--config", str(tmp / "config.yaml"))
    assert result.exit_code == 2 and "--resume" in result.output and "--force" in result.output


def test_torchrun_two_processes_on_cpu(tmp_path: Path, tiny_manifest: Path) -> None:
    """The same run under torchrun (gloo): one set of outputs, written once, evaluated once."""
    import os
    import subprocess
    import sys

    cfg = tiny_config(tmp_path, tiny_manifest, train={"threads": 1}, tracking={"mlflow": False})
    path = write_config(tmp_path, cfg)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "-m",
            "authlens",
            "train",
            "--config",
            str(path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[3],
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count('"event": "train_start"') == 1 and '"world": 2' in proc.stderr
    assert proc.stderr.count("done best val AUC") == 1
    run_dir = tmp_path / "runs" / "tiny"
    best = load_checkpoint(run_dir / "best.pt")
    assert best.ood is not None and best.data["n_train"] == 24
    assert (run_dir / "report.json").is_file()
