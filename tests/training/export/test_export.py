"""``authlens export`` (:mod:`training.export.run`): the run's photos and report, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from factories import tiny_checkpoint
from typer.testing import CliRunner

from authlens.cli import app
from model.bundle import CARD_FILE, load_bundle
from training.checkpoint import Checkpoint, save_checkpoint
from training.export.run import ExportError, export_checkpoint

ROOT = Path(__file__).resolve().parents[3]


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


def test_photo_errors_reach_the_cli_as_export_errors(ckpt: Checkpoint, tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "run" / "best.pt", ckpt)
    missing = tmp_path / "nope.csv"
    with pytest.raises(ExportError, match=r"^--images .*nope\.csv: no such file or folder\.$"):
        export_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "b", images=missing)
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--checkpoint",
            str(tmp_path / "run" / "best.pt"),
            "--out",
            str(tmp_path / "b"),
            "--images",
            str(missing),
        ],
    )
    assert result.exit_code == 2 and "no such file or folder" in result.output
    assert not (tmp_path / "b").exists()
