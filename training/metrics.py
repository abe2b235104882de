"""Metrics shared by training (validation) and evaluation, on top of scikit-learn."""

from __future__ import annotations

import math
from collections.abc import Mapping

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
