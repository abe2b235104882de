"""Metrics shared by training (validation), evaluation and export, on top of scikit-learn.

The one expected calibration error of the project is :func:`reliability` (its ``ece``).

:data:`METRICS` is the one table of the evaluation summary's figures: key, title, format and
order. The report's ``summary`` (copied into ``bundle.json``), its Markdown table, the model card
and the console summary line all read it, so a new metric is one entry here plus its computation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
        # a flag without a threshold is not in the bundle: never raised
        pred = probs[keep, j] >= thresholds[name] if name in thresholds else np.zeros(int(keep.sum()), bool)
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


# ----------------------------------------------------------------------------- the table

SCOPES: dict[str, str] = {"photos": "", "items": "item_", "probe": "probe_"}
"""What a metric is measured on, and the prefix of its summary key: single photos, items (photos
of one ``item_id`` combined as serving combines them), or the linear-probe baseline."""


@dataclass(frozen=True)
class Metric:
    """One figure of the evaluation summary.

    Attributes:
        key: Its key in the report's ``summary`` and ``bundle.json``'s metrics (stable: serving reads them).
        title: What people read (report, model card).
        fmt: A format string for its value, ``"{:.3f}"`` for scores and rates, ``"{:d}"`` for counts.
        short: Its label in the one-line console summary; ``None`` leaves it out of that line.
        scope: What it is measured on (a key of :data:`SCOPES`); ``key`` carries the scope's prefix.
    """

    key: str
    title: str
    fmt: str = "{:.3f}"
    short: str | None = None
    scope: str = "photos"

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"Unknown metric scope {self.scope!r}. Allowed: {', '.join(SCOPES)}.")
        if not self.key.startswith(SCOPES[self.scope]):
            raise ValueError(
                f"Metric {self.key!r} of scope {self.scope!r} must start with {SCOPES[self.scope]!r}."
            )

    @property
    def field(self) -> str:
        """Its key inside its scope's own section (``item_roc_auc`` -> ``roc_auc`` of ``items``)."""
        return self.key.removeprefix(SCOPES[self.scope])

    @property
    def is_count(self) -> bool:
        """Whether the value is a count (an integer format)."""
        return self.fmt.endswith("d}")

    def format(self, value: Any, *, digits: int | None = None) -> str:
        """``value`` as :attr:`fmt` says (``digits`` overrides the decimals of a non-count); ``n/a`` if missing."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "n/a"
        if self.is_count:
            return self.fmt.format(int(value)) if float(value).is_integer() else str(value)
        if digits is not None:
            return f"{value:.{digits}f}"
        return self.fmt.format(value)


_RECALL_1 = "Counterfeit recall at 1% false accusations"
_RECALL_5 = "Counterfeit recall at 5% false accusations"

METRICS: tuple[Metric, ...] = (
    Metric("n", "Photos evaluated", "{:d}"),
    Metric("n_counterfeit", "of which counterfeit", "{:d}"),
    Metric("folds", "Cross-fitting folds (each photo scored by a model that did not train on it)", "{:d}"),
    Metric("roc_auc", "ROC-AUC", short="ROC-AUC"),
    Metric("roc_auc_fold_std", "ROC-AUC spread across folds (standard deviation)"),
    Metric("pr_auc", "PR-AUC"),
    Metric("accuracy", "Accuracy at p = 0.5"),
    Metric("recall_at_far_1pct", _RECALL_1, short="recall@1%FAR"),
    Metric("recall_at_far_5pct", _RECALL_5, short="recall@5%FAR"),
    Metric("ece", "ECE (calibrated)", short="ECE"),
    Metric("ece_uncalibrated", "ECE (before calibration)"),
    Metric("ece_noise_floor", "ECE a perfectly calibrated model would show on these photos"),
    Metric("inconclusive_rate", "Inconclusive rate", short="inconclusive"),
    Metric("false_accusation_rate", "False-accusation rate at the thresholds"),
    Metric("false_accusation_bound", "False-accusation rate at the thresholds, upper confidence bound"),
    Metric("counterfeit_recall", "Counterfeit recall at the thresholds"),
    Metric("flag_macro_f1", "Flag macro-F1", short="flag macro-F1"),
    Metric("localisation_peak_in_box", "Map peak inside the box"),
    Metric("localisation_chance", "Map peak inside the box by chance"),
    Metric("ood_rate", "Out-of-distribution rate"),
    Metric("ood_rate_non_product_photos", "Out-of-distribution rate of non-product photos"),
    Metric("item_n", "Items evaluated", "{:d}", scope="items"),
    Metric("item_roc_auc", "ROC-AUC of items", scope="items"),
    Metric("item_recall_at_far_1pct", f"{_RECALL_1}, items", scope="items"),
    Metric("item_recall_at_far_5pct", f"{_RECALL_5}, items", scope="items"),
    Metric("item_ece", "ECE of items (calibrated)", scope="items"),
    Metric("probe_roc_auc", "ROC-AUC of the linear probe", short="ROC-AUC", scope="probe"),
    Metric("probe_pr_auc", "PR-AUC of the linear probe", scope="probe"),
    Metric("probe_recall_at_far_1pct", f"{_RECALL_1}, linear probe", short="recall@1%FAR", scope="probe"),
    Metric("probe_recall_at_far_5pct", f"{_RECALL_5}, linear probe", scope="probe"),
    Metric("probe_ece", "ECE of the linear probe", scope="probe"),
    Metric("finetune_minus_probe_roc_auc", "ROC-AUC gain of fine-tuning over the linear probe"),
)
"""Every metric of the evaluation summary, in display order."""


def metric(key: str) -> Metric | None:
    """The :data:`METRICS` entry of summary key ``key``; ``None`` for anything else (e.g. ``evaluated``)."""
    return next((m for m in METRICS if m.key == key), None)


def metrics_of(scope: str) -> tuple[Metric, ...]:
    """The entries of :data:`METRICS` measured on ``scope`` (a key of :data:`SCOPES`), in display order."""
    if scope not in SCOPES:
        raise ValueError(f"Unknown metric scope {scope!r}. Allowed: {', '.join(SCOPES)}.")
    return tuple(m for m in METRICS if m.scope == scope)
