"""SIGKILL during training, then ``--resume``: the same final metrics as a run never interrupted.

``test_run.py::test_resume_continues_exactly`` stops a run politely inside one process; here the
``authlens train`` process is killed with SIGKILL (no handler, no cleanup, possibly mid-write)
while its second epoch runs, and a new process continues it from ``last.pt``. Checkpoints are
written atomically (temporary file + rename), so the kill leaves the last complete epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_run import tiny_config
from tinydata import make_dataset

from training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[3]
EPOCHS = 2


def _train(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "authlens",
            "--log-format",
            "text",
            "train",
            "--config",
            str(config),
            "--no-progress",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _config(tmp: Path, manifest: Path, name: str) -> Path:
    cfg = tiny_config(
        tmp,
        manifest,
        run={"name": name},
        train={"epochs": EPOCHS},
        tracking={"mlflow": False},
        evaluate={"probe": False, "worst_errors": 2},
    )
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _epoch_of(last: Path) -> int | None:
    try:
        return load_checkpoint(last).epoch
    except Exception:  # being replaced right now: try again
        return None


def _metrics(history: list[dict]) -> list[dict]:
    """The history without wall-clock figures (epoch seconds, images per second)."""
    return [{k: v for k, v in epoch.items() if "seconds" not in k and "per_s" not in k} for epoch in history]


@pytest.mark.timeout(900)
def test_sigkill_mid_training_then_resume_gives_the_same_metrics(tmp_path: Path) -> None:
    manifest = make_dataset(tmp_path / "data", n=40, size=80, with_split=True)
    runs = tmp_path / "runs"

    straight = _train(_config(tmp_path, manifest, "straight"))
    out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, out.decode()[-3000:]

    victim = _train(_config(tmp_path, manifest, "killed"))
    last = runs / "killed" / "last.pt"
    deadline = time.monotonic() + 600
    while not (last.is_file() and _epoch_of(last) == 1):  # epoch 1 saved: epoch 2 is running
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(60)
    assert victim.returncode == -signal.SIGKILL
    assert _epoch_of(last) in (1, 2) and not (runs / "killed" / "report.json").exists()

    resumed = _train(_config(tmp_path, manifest, "killed"), "--resume", "last")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out.decode()[-3000:]

    a, b = runs / "straight", runs / "killed"
    history_a = json.loads((a / "history.json").read_text())
    history_b = json.loads((b / "history.json").read_text())
    assert len(history_a) == len(history_b) == EPOCHS
    assert _metrics(history_a) == _metrics(history_b)  # every epoch's losses and validation metrics
    report_a = json.loads((a / "report.json").read_text())
    report_b = json.loads((b / "report.json").read_text())
    summary_a, summary_b = report_a["summary"], report_b["summary"]
    assert summary_a.pop("evaluated").replace("straight", "killed") == summary_b.pop("evaluated")
    assert summary_a == summary_b  # ROC-AUC, recall at FAR, ECE ...: every test-split figure
    ca, cb = load_checkpoint(a / "best.pt"), load_checkpoint(b / "best.pt")
    assert ca.epoch == cb.epoch and ca.decision == cb.decision
    for key, tensor in ca.state_dict.items():
        assert torch.equal(tensor, cb.state_dict[key]), key
