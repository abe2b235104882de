"""Metrics shared by training (validation), evaluation and export, on top of scikit-learn.

The one expected calibration error of the project is :func:`reliability` (its ``ece``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve

from model.flags import FLAG_NAMES


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for the positive class (counterfeit = 1); nan with a single class."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, scores))


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve); nan with a single class."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return math.nan
    return float(average_precision_score(labels, scores))


def recall_at_far(labels: np.ndarray, scores: np.ndarray, far: float) -> float:
    """Highest counterfeit recall with a false-accusation rate (FPR) of at most ``far`` on these data."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return math.nan
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= far + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def flag_f1(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, thresholds: Mapping[str, float]
) -> dict[str, float | None]:
    """Per-flag F1 on flag-labelled photos; ``None`` for flags without positives there."""
    keep = np.asarray(mask) > 0.5
    out: dict[str, float | None] = {}
    for j, name in enumerate(FLAG_NAMES):
        y = targets[keep, j]
        if not keep.any() or y.sum() == 0:
            out[name] = None
            continue
        pred = probs[keep, j] >= thresholds.get(name, 0.5)
        out[name] = float(f1_score(y, pred, zero_division=0))
    return out


def flag_macro_f1(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, thresholds: Mapping[str, float]
) -> float:
    """Mean F1 over flags that have positives among flag-labelled photos; nan when none do."""
    values = [v for v in flag_f1(probs, targets, mask, thresholds).values() if v is not None]
    return float(np.mean(values)) if values else math.nan


@dataclass(frozen=True)
class Reliability:
    """Binned calibration of the counterfeit probability."""

    ece: float
    bin_edges: np.ndarray  # (B + 1,)
    confidence: np.ndarray  # (B,) mean predicted probability per bin (nan when empty)
    frequency: np.ndarray  # (B,) observed counterfeit share per bin (nan when empty)
    counts: np.ndarray  # (B,)


def reliability(p: np.ndarray, labels: np.ndarray, bins: int = 15) -> Reliability:
    """Expected calibration error of the counterfeit probability over ``bins`` equal-width bins.

    ``ECE = sum_b n_b / N * |mean(y_b) - mean(p_b)|``, the quantity the reliability diagram shows.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.int64)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(counts > 0, sum_p / counts, np.nan)
        freq = np.where(counts > 0, sum_y / counts, np.nan)
    ece = float(np.sum(np.abs(sum_y - sum_p)) / max(len(p), 1))
    return Reliability(ece=ece, bin_edges=edges, confidence=conf, frequency=freq, counts=counts)


def ece_noise_floor(p: np.ndarray, bins: int = 15, *, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE of a *perfectly calibrated* model with these probabilities, on this many photos.

    Labels drawn as ``Bernoulli(p)`` are calibrated by construction, yet their binned ECE is not
    0: each bin's observed frequency scatters around its mean probability. On a few hundred
    photos that scatter alone reaches several hundredths, so an ECE near this floor is as
    calibrated as the sample can show.
    """
    p = np.asarray(p, dtype=np.float64)
    if not len(p):
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(np.mean([reliability(p, rng.random(len(p)) < p, bins).ece for _ in range(draws)]))
