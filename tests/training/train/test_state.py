"""What last.pt carries besides weights: the run's state epoch by epoch, and the generators' state."""

from __future__ import annotations

import random

import numpy as np
import torch

from training.train.loop import EpochStats
from training.train.state import RunState, rng_state, set_rng_state


def test_run_state_records_epochs_and_the_best_one() -> None:
    state = RunState()
    assert state.images_per_s == 0.0
    row, improved = state.record(EpochStats(1.0, 0.5, 0.3, 0.2, 100, 10.0, 1e-3), {"val_auc": 0.7})
    assert improved and (state.epoch, state.best_epoch, state.best_auc) == (1, 1, 0.7)
    assert row["epoch"] == 1 and row["train_images_per_s"] == 10.0 and row["val_auc"] == 0.7
    _, improved = state.record(EpochStats(0.9, 0.4, 0.3, 0.2, 100, 30.0, 1e-4), {"val_auc": 0.6})
    assert not improved and (state.epoch, state.best_epoch, state.train_seconds) == (2, 1, 40.0)
    assert len(state.history) == 2 and state.images_per_s == 200 / 40  # weighted by epoch duration


def test_rng_state_round_trip_continues_every_generator() -> None:
    saved = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(saved)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
