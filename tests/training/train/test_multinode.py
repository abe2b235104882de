"""Resume after a restart with another number of processes (torchrun, gloo, CPU): 1 -> 2 and 2 -> 1.

The training set has 23 photos, so one process takes 2 steps per epoch (batch 8, last partial
batch dropped) and two take 3 (each rank 12 photos, padded, in batches of 4): a resumed run must
continue at the same point of the learning-rate schedule although an epoch has another number of
steps, see every photo of each epoch once across its ranks, and finish calibrated.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tinydata import make_dataset

from model.configio import load_config
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data.dataset import EpochSampler
from training.train.run import run

ROOT = Path(__file__).resolve().parents[3]
STOP_AFTER_ONE = (
    "import sys\n"
    "from model.configio import load_config\n"
    "from training.config import TrainConfig\n"
    "from training.train.run import run\n"
    "run(load_config(TrainConfig, sys.argv[1]), stop_after=1, show_progress=False)\n"
)


@pytest.fixture(scope="module")
def odd_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny photo set with one training photo removed: 23 train, 8 val, 8 test."""
    manifest = make_dataset(tmp_path_factory.mktemp("data"), n=40, size=80, with_split=True)
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    first_train = next(i for i, r in enumerate(rows) if r["split"] == "train")
    del rows[first_train]
    out = manifest.with_name("odd.csv")
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def _config(tmp: Path, manifest: Path, name: str) -> Path:
    cfg = {
        "run": {"name": name, "output_dir": str(tmp / "runs"), "seed": 0},
        "data": {"manifest": str(manifest), "image_size": 64, "draft_size": 64, "num_workers": 0},
        "model": {"pretrained": "none", "drop_rate": 0.2},
        "train": {"epochs": 2, "batch_size": 8, "threads": 1, "warmup_epochs": 0.5},
        "tracking": {"mlflow": False},
        "evaluate": {"after_training": False},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    return path


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """Two processes on this machine (``--standalone`` picks a free rendezvous port)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _check_finished(run_dir: Path, *, steps_per_epoch: int, cfg: TrainConfig) -> None:
    """Two epochs done, the schedule at its end (as for a run that never changed size), calibrated."""
    last = load_checkpoint(run_dir / "last.pt")
    state = last.train_state["run_state"]
    assert last.epoch == state["epoch"] == 2
    # the schedule is this world's: it spans 2 epochs of its steps, and the run ended at its end
    assert state["step"] == last.train_state["scheduler"]["t_initial"] == 2 * steps_per_epoch
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    # at the schedule's last step the learning rate is its floor, exactly
    assert history[-1]["lr"] == pytest.approx(cfg.train.lr * cfg.train.min_lr_ratio, rel=1e-9)
    best = load_checkpoint(run_dir / "best.pt")
    assert best.ood is not None and best.decision is not None and best.data["n_train"] == 23
    for tensor in last.train_state["model"].values():
        assert torch.isfinite(tensor.float()).all()


def test_one_process_then_two(tmp_path: Path, odd_manifest: Path) -> None:
    path = _config(tmp_path, odd_manifest, "grow")
    cfg = load_config(TrainConfig, path)
    first = run(cfg, stop_after=1, show_progress=False)
    before = load_checkpoint(first.last).train_state["run_state"]
    assert (before["epoch"], before["step"]) == (1, 2)  # one process: 23 // 8 steps

    proc = _torchrun("-m", "authlens", "train", "--config", str(path), "--resume", "last", "--no-progress")
    starts = [json.loads(line) for line in proc.stderr.splitlines() if '"event": "train_start"' in line]
    assert len(starts) == 1 and starts[0]["world"] == 2 and starts[0]["resumed_from"] == 1
    assert '"event": "resume_world_changed"' in proc.stderr
    _check_finished(first.run_dir, steps_per_epoch=3, cfg=cfg)
    history = json.loads((first.run_dir / "history.json").read_text())
    assert history[0] == before["history"][0]  # the first epoch's row is kept as it was


def test_two_processes_then_one(tmp_path: Path, odd_manifest: Path) -> None:
    path = _config(tmp_path, odd_manifest, "shrink")
    script = tmp_path / "stop_after_one.py"
    script.write_text(STOP_AFTER_ONE, encoding="utf-8")
    _torchrun(str(script), str(path))
    run_dir = tmp_path / "runs" / "shrink"
    before = load_checkpoint(run_dir / "last.pt").train_state["run_state"]
    assert (before["epoch"], before["step"], before["world"]) == (1, 3, 2)

    cfg = load_config(TrainConfig, path)
    run(cfg, resume=True, show_progress=False)
    _check_finished(run_dir, steps_per_epoch=2, cfg=cfg)
    assert load_checkpoint(run_dir / "last.pt").train_state["run_state"]["world"] == 1


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_rank_count_covers_the_same_epoch(world: int) -> None:
    """Whatever the number of processes, an epoch is one permutation of the photos (fixed by seed
    and epoch), shared out between the ranks; padding repeats at most world - 1 photos."""
    n, seed, epoch = 23, 7, 3
    alone = EpochSampler(n, seed=seed)
    alone.set_epoch(epoch)
    order = list(alone)
    shards = []
    for rank in range(world):
        s = EpochSampler(n, seed=seed, rank=rank, world=world)
        s.set_epoch(epoch)
        shards.append(list(s))
    merged = [k for step in zip(*shards, strict=True) for k in step]
    assert merged[:n] == order and len(merged) - n < world
    assert set(merged) == set(order) == {epoch * n + i for i in range(n)}
