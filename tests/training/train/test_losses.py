"""Training losses: class weights, the flag loss on labelled photos, the maps' cell-wise targets and loss."""

from __future__ import annotations

import numpy as np
import torch

from training.train.losses import class_weights, dense_loss, dense_targets, losses


def test_class_weights_give_each_class_half_the_total_weight() -> None:
    labels = np.array([0, 0, 0, 1])
    w = class_weights(labels)
    assert w.dtype == torch.float32 and torch.allclose(w, torch.tensor([4 / 6, 4 / 2]))
    assert torch.isclose(w[torch.from_numpy(labels)].sum(), torch.tensor(4.0))


def test_flag_loss_ignores_photos_without_flag_labels() -> None:
    out = {"counterfeit_logit": torch.zeros(2), "flag_logits": torch.zeros(2, 7)}
    flags = torch.zeros(2, 7)
    auth, flag = losses(out, torch.tensor([0.0, 1.0]), flags, torch.tensor([1.0, 0.0]), None)
    assert abs(auth.item() - np.log(2)) < 1e-6 and abs(flag.item() - np.log(2)) < 1e-6
    _, none = losses(out, torch.tensor([0.0, 1.0]), flags, torch.zeros(2), None)
    assert none.item() == 0.0


def test_dense_targets_mark_the_cells_a_box_covers() -> None:
    boxes = torch.tensor(
        [[[2, 40, 40, 60, 60], [0, 0, 0, 224, 48], [-1, 0, 0, 224, 224]]], dtype=torch.float32
    )  # a small stitch box inside cell (1, 1), a colour box over the top row and a half, padding
    cam, flags = dense_targets(boxes, (7, 7), (224, 224), 7)
    assert cam.shape == (1, 7, 7) and flags.shape == (1, 7, 7, 7)
    assert flags[0, 2, 1, 1] == 1.0 and flags[0, 2].sum() == 1.0  # the small box: its one cell, whole
    assert torch.equal(flags[0, 0, 0], torch.ones(7)) and torch.allclose(
        flags[0, 0, 1], torch.full((7,), 0.5)
    )
    assert flags[0, 0, 2:].sum() == 0 and flags[0, 1].sum() == 0  # padding marks nothing
    assert torch.equal(cam[0], torch.maximum(flags[0, 0], flags[0, 2]))  # any tell


def test_dense_loss_only_counts_photos_with_located_tells() -> None:
    out = {"cam": torch.zeros(2, 7, 7), "flag_maps": torch.zeros(2, 7, 7, 7)}
    boxes = torch.full((2, 4, 5), -1.0)
    assert dense_loss(out, boxes, torch.zeros(2), (224, 224)).item() == 0.0
    # logits 0 against all-zero targets: 2 x log 2 for the one photo that counts
    assert abs(dense_loss(out, boxes, torch.tensor([1.0, 0.0]), (224, 224)).item() - 2 * np.log(2)) < 1e-6


def test_dense_loss_weights_tell_cells() -> None:
    out = {"cam": torch.zeros(1, 7, 7), "flag_maps": torch.zeros(1, 7, 7, 7)}
    boxes = torch.full((1, 4, 5), -1.0)
    boxes[0, 0] = torch.tensor([2.0, 40, 40, 60, 60])  # one cell of one flag
    plain = dense_loss(out, boxes, torch.ones(1), (224, 224), 1.0).item()
    weighted = dense_loss(out, boxes, torch.ones(1), (224, 224), 4.0).item()
    # the tell cell counts 4x: +3 log 2 / 49 on the counterfeit map, +3 log 2 / 343 on the flag maps
    assert abs(weighted - plain - 3 * np.log(2) * (1 / 49 + 1 / 343)) < 1e-6
