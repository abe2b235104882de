"""The training losses: class-weighted authenticity BCE, flag BCE, and cell-wise BCE of the maps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-class loss weights ``N / (2 * n_c)``: both classes carry half the total weight.

    Args:
        labels: ``(N,)`` class index per training photo (0 genuine, 1 counterfeit).

    Returns:
        ``(2,)`` float32 weights.
    """
    n = len(labels)
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return torch.tensor(n / (2.0 * np.maximum(counts, 1.0)), dtype=torch.float32)


def losses(
    out: dict[str, torch.Tensor],
    labels: torch.Tensor,
    flags: torch.Tensor,
    has_flags: torch.Tensor,
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Authenticity and flag losses.

    The authenticity loss is binary cross-entropy, class-weighted when ``weights`` (2,) is given.
    The flag loss is multi-label binary cross-entropy averaged over photos that have flag labels
    (``has_flags == 1``); photos without (``flags is None`` in the manifest) contribute nothing.

    Args:
        out: The network's outputs for a batch of ``B`` photos.
        labels: ``(B,)`` float 0/1, 1 = counterfeit.
        flags: ``(B, F)`` float 0/1 flag targets.
        has_flags: ``(B,)`` float, 1 where the photo has flag labels.
        weights: ``(2,)`` class weights (:func:`class_weights`), or ``None`` for none.

    Returns:
        The scalar authenticity and flag losses.
    """
    sample_w = None if weights is None else weights[labels.long()]
    auth = F.binary_cross_entropy_with_logits(out["counterfeit_logit"], labels, weight=sample_w)
    per_photo = F.binary_cross_entropy_with_logits(out["flag_logits"], flags, reduction="none").mean(1)
    labelled = has_flags.sum()
    flag = (per_photo * has_flags).sum() / labelled.clamp(min=1.0)
    return auth, flag


def dense_targets(
    boxes: torch.Tensor, map_size: tuple[int, int], input_size: tuple[int, int], num_flags: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell targets for the maps from tell boxes.

    A cell's target for a box is the share of the smaller of the two (cell or box) that they
    have in common: 1 for a cell inside a large box and for the cell holding a small one, a
    fraction along a box's edge. Several boxes take the maximum.

    Args:
        boxes: ``(B, K, 5)`` rows ``(flag index, x0, y0, x1, y1)`` in input pixels; index -1 pads.
        map_size: ``(h, w)`` of the maps.
        input_size: ``(H, W)`` of the model input.
        num_flags: ``F``.

    Returns:
        ``(B, h, w)`` targets for the counterfeit map (any tell) and ``(B, F, h, w)`` per flag.
    """
    h, w = map_size
    ch, cw = input_size[0] / h, input_size[1] / w
    flag = boxes[..., 0].long()  # (B, K)
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(1, 5))  # (B, K, 1) each
    cx0 = torch.arange(w, dtype=boxes.dtype) * cw  # (w,)
    cy0 = torch.arange(h, dtype=boxes.dtype) * ch
    ox = (torch.minimum(x1, cx0 + cw) - torch.maximum(x0, cx0)).clamp(min=0)  # (B, K, w)
    oy = (torch.minimum(y1, cy0 + ch) - torch.maximum(y0, cy0)).clamp(min=0)  # (B, K, h)
    overlap = oy[..., :, None] * ox[..., None, :]  # (B, K, h, w)
    box_area = ((x1 - x0).clamp(min=1e-3) * (y1 - y0).clamp(min=1e-3))[..., None]  # (B, K, 1, 1)
    share = (overlap / torch.clamp(box_area, max=ch * cw)).clamp(max=1.0)
    share = share * (flag >= 0)[..., None, None]
    onehot = F.one_hot(flag.clamp(min=0), num_flags).to(share.dtype) * (flag >= 0)[..., None]  # (B, K, F)
    per_flag = (share[:, :, None] * onehot[..., None, None]).amax(dim=1)  # (B, F, h, w)
    return share.amax(dim=1), per_flag


def dense_loss(
    out: dict[str, torch.Tensor],
    boxes: torch.Tensor,
    dense: torch.Tensor,
    input_size: tuple[int, int],
    pos_weight: float = 1.0,
) -> torch.Tensor:
    """Cell-wise binary cross-entropy of the counterfeit and flag maps on photos with ``dense == 1``.

    A tell covers one to four of the 49 cells of a 224 px photo; ``pos_weight`` counts its cells
    that many times, so the clean cells around it do not drown it out.

    Args:
        out: The network's outputs; ``cam`` ``(B, h, w)`` and ``flag_maps`` ``(B, F, h, w)`` are used.
        boxes: ``(B, K, 5)`` tell boxes as in :func:`dense_targets`.
        dense: ``(B,)`` float, 1 where the boxes locate every tell of the photo.
        input_size: ``(H, W)`` of the model input.
        pos_weight: Weight of a tell cell against a clean one.

    Returns:
        The scalar loss (0, still attached to the graph, when no photo counts).
    """
    if not bool(dense.any()):
        return out["cam"].sum() * 0.0
    sel = dense > 0
    cam, maps = out["cam"][sel], out["flag_maps"][sel]
    t_cam, t_flags = dense_targets(boxes[sel], tuple(cam.shape[-2:]), input_size, maps.shape[1])
    w = torch.tensor(pos_weight, dtype=cam.dtype)
    cam_loss = F.binary_cross_entropy_with_logits(cam, t_cam, pos_weight=w)
    return cam_loss + F.binary_cross_entropy_with_logits(maps, t_flags, pos_weight=w)
