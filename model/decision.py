"""From network outputs to a verdict an investigator can defend.

Used by evaluation (to report inconclusive rates) and by serving (to answer), so both apply the
same rule:

* Each photo is first checked for usability: too small, too blurry, out of distribution
  (its embedding is further from the training data than the bundle's threshold), or a reused
  photo (it matches a reference gallery entry: the brand's catalogue photo or another listing's,
  which proves nothing about the item shipped). An unusable photo gets verdict ``inconclusive``
  with those reasons and does not vote for the item.
* A usable photo's calibrated counterfeit probability ``p`` is compared with two thresholds from
  the bundle: ``p >= counterfeit_threshold`` is ``counterfeit`` (set on validation for the
  maximum false-accusation rate), ``p <= genuine_threshold`` is ``genuine`` (set for the maximum
  miss rate), in between ``inconclusive`` / ``low_confidence``.
* An item (1 to 8 photos of one physical object) averages the *logits* of its usable photos and
  applies the same thresholds. Averaging logits rather than taking the most suspicious photo
  keeps the false-accusation rate of an item near that of a photo however many photos are sent,
  while a strong tell on one photo still moves the mean. With no usable photo the item is
  ``inconclusive`` with every photo's reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

import numpy as np

from model.bundle import Decision

Verdict = Literal["genuine", "counterfeit", "inconclusive"]
VERDICTS: tuple[str, ...] = ("genuine", "counterfeit", "inconclusive")

REASON_LOW_CONFIDENCE = "low_confidence"
REASON_OOD = "out_of_distribution"
REASON_TOO_SMALL = "image_too_small"
REASON_BLURRY = "too_blurry"
REASON_NO_USABLE = "no_usable_image"
REASON_REUSED = "reused_photo"
REASONS: tuple[str, ...] = (
    REASON_LOW_CONFIDENCE,
    REASON_OOD,
    REASON_TOO_SMALL,
    REASON_BLURRY,
    REASON_NO_USABLE,
    REASON_REUSED,
)

_EPS = 1e-7

# The one logit/sigmoid pair of the project: floats in, floats out; arrays in, arrays out.


@overload
def logit(p: float) -> float: ...
@overload
def logit(p: np.ndarray) -> np.ndarray: ...
def logit(p: float | np.ndarray) -> float | np.ndarray:
    """Log-odds of ``p``, clipped away from 0 and 1 (by 1e-7)."""
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    out = np.log(q) - np.log1p(-q)
    return float(out) if out.ndim == 0 else out


@overload
def sigmoid(x: float) -> float: ...
@overload
def sigmoid(x: np.ndarray) -> np.ndarray: ...
def sigmoid(x: float | np.ndarray) -> float | np.ndarray:
    """Inverse of :func:`logit` (``1 / (1 + exp(-x))``), without overflow for any ``x``."""
    out = np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Outcome:
    """A verdict with the probability it rests on and, when inconclusive, why."""

    verdict: Verdict
    counterfeit_probability: float
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def authenticity_score(self) -> float:
        """Calibrated probability that the item is genuine."""
        return 1.0 - self.counterfeit_probability


def classify(p_counterfeit: float, decision: Decision) -> Outcome:
    """Apply the two thresholds to a calibrated counterfeit probability."""
    if p_counterfeit >= decision.counterfeit_threshold:
        return Outcome("counterfeit", p_counterfeit)
    if p_counterfeit <= decision.genuine_threshold:
        return Outcome("genuine", p_counterfeit)
    return Outcome("inconclusive", p_counterfeit, (REASON_LOW_CONFIDENCE,))


def usability_reasons(
    *,
    min_side: int,
    sharpness: float,
    ood_score: float,
    decision: Decision,
    ood_threshold: float,
    reused: bool = False,
) -> tuple[str, ...]:
    """Why a photo cannot be scored reliably; empty when it can.

    Args:
        min_side: Shorter side of the original photo in pixels.
        sharpness: :func:`model.imaging.sharpness` of the model input.
        ood_score: Mahalanobis score of the embedding.
        decision: The bundle's decision settings.
        ood_threshold: The bundle's OOD threshold.
        reused: The photo matches a reference gallery entry (a catalogue photo or another
            listing's photo): it shows *a* item, not necessarily the one for sale, so like an
            out-of-distribution photo it casts no vote.
    """
    reasons: list[str] = []
    if min_side < decision.min_image_side:
        reasons.append(REASON_TOO_SMALL)
    if sharpness < decision.min_sharpness:
        reasons.append(REASON_BLURRY)
    if ood_score > ood_threshold:
        reasons.append(REASON_OOD)
    if reused:
        reasons.append(REASON_REUSED)
    return tuple(reasons)


def judge_image(p_counterfeit: float, reasons: Sequence[str], decision: Decision) -> Outcome:
    """One photo's outcome: inconclusive with ``reasons`` if unusable, else :func:`classify`."""
    if reasons:
        return Outcome("inconclusive", p_counterfeit, tuple(reasons))
    return classify(p_counterfeit, decision)


def judge_item(images: Sequence[tuple[float, Sequence[str]]], decision: Decision) -> Outcome:
    """Combine photos of one item; each entry is ``(p_counterfeit, usability_reasons)``.

    Raises:
        ValueError: no photos at all.
    """
    if not images:
        raise ValueError("An item needs at least one photo.")
    usable = [p for p, reasons in images if not reasons]
    if not usable:
        all_reasons = dict.fromkeys(r for _, reasons in images for r in reasons)
        mean_p = sigmoid(sum(logit(p) for p, _ in images) / len(images))
        return Outcome("inconclusive", mean_p, (REASON_NO_USABLE, *all_reasons))
    p_item = sigmoid(sum(logit(p) for p in usable) / len(usable))
    return classify(p_item, decision)


def map_box(
    activation: np.ndarray, input_size: tuple[int, int], *, rel_threshold: float = 0.5
) -> tuple[tuple[float, float, float, float], tuple[float, float]]:
    """Box around the strongest region of an activation map, in model-input pixels.

    The map is thresholded at ``rel_threshold`` of its peak (after subtracting its minimum);
    the box spans the 4-connected region containing the peak. Cells map to input pixels by
    their extent, so a 7x7 map on a 224 input gives boxes on a 32-pixel grid.

    Args:
        activation: ``(h, w)`` map.
        input_size: ``(height, width)`` of the model input.
        rel_threshold: Fraction of the peak a cell must reach to join the region.

    Returns:
        ``((x0, y0, x1, y1), (peak_x, peak_y))`` in model-input pixels.
    """
    a = np.asarray(activation, dtype=np.float64)
    h, w = a.shape
    a = a - a.min()
    peak = np.unravel_index(int(np.argmax(a)), a.shape)
    mask = a >= rel_threshold * a[peak] if a[peak] > 0 else np.zeros_like(a, dtype=bool)
    mask[peak] = True
    seen = np.zeros_like(mask)
    stack = [peak]
    seen[peak] = True
    ys, xs = [peak[0]], [peak[1]]
    while stack:
        y, x = stack.pop()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                stack.append((ny, nx))
                ys.append(ny)
                xs.append(nx)
    ih, iw = input_size
    cy, cx = ih / h, iw / w
    box = (min(xs) * cx, min(ys) * cy, (max(xs) + 1) * cx, (max(ys) + 1) * cy)
    return box, ((peak[1] + 0.5) * cx, (peak[0] + 0.5) * cy)


@dataclass(frozen=True)
class FlagHit:
    """A raised flag: its name, its probability and the photo where it is strongest."""

    name: str
    score: float
    image: int


def raised_flags(
    flag_probs: np.ndarray | Sequence[Sequence[float]],
    usable: Sequence[bool],
    decision: Decision,
    flags: Sequence[str],
) -> tuple[FlagHit, ...]:
    """Flags raised for one photo or one item, strongest first.

    Per flag, the highest probability over the *usable* photos is compared with the flag's
    threshold. Unlike the verdict (an average of logits), flags take the maximum: a tell such as
    a wrong serial-number font shows on one close-up only, and averaging would hide it. Unusable
    photos raise nothing, as they cast no vote for the verdict.

    Args:
        flag_probs: ``(N, F)`` flag probabilities of the N photos, flags in ``flags`` order;
            ``(N, 0)`` for a model without flags, which raises none.
        usable: ``(N,)`` whether each photo passed :func:`usability_reasons`.
        decision: The bundle's decision settings (per-flag thresholds).
        flags: Flag names in head order (the bundle's flags; possibly none).

    Raises:
        ValueError: the shapes of ``flag_probs``, ``usable`` and ``flags`` disagree.
    """
    n = len(flag_probs)
    arr = np.asarray(flag_probs, dtype=np.float64) if n else None
    # (N, 0) for a model without flags: reshape cannot infer -1 from an empty array
    probs = None if arr is None else arr.reshape(n, -1) if arr.size else arr.reshape(n, 0)
    if probs is None or probs.shape[1] != len(flags) or len(usable) != probs.shape[0]:
        shape = None if probs is None else probs.shape
        raise ValueError(
            f"flag_probs of shape {shape} must be (N, {len(flags)}) with N = len(usable) = {len(usable)}."
        )
    keep = np.flatnonzero(np.asarray(usable, dtype=bool))
    if keep.size == 0:
        return ()
    hits: list[FlagHit] = []
    for f, name in enumerate(flags):
        col = probs[keep, f]
        best = int(np.argmax(col))
        if col[best] >= decision.flag_thresholds[name]:
            hits.append(FlagHit(name, float(col[best]), int(keep[best])))
    return tuple(sorted(hits, key=lambda h: (-h.score, h.name)))
