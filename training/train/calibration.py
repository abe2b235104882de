"""Calibration and decision settings fitted on validation, and the out-of-distribution reference.

* Temperature scaling: one scalar ``T`` so that ``sigmoid(logit / T)`` is a calibrated counterfeit
  probability (Guo et al., 2017); fitted by minimising validation log-loss.
* Thresholds on that probability (the rules of :mod:`model.decision`): the counterfeit threshold
  is the lowest that accuses at most ``max_false_accusation_rate`` of the genuine validation
  photos; the genuine threshold is the highest that lets at most ``max_miss_rate`` of the
  counterfeits through. Between them lies the inconclusive band. Each threshold sits half-way
  (in log-odds) between the two validation scores it separates, not on top of one.
* Flag thresholds: per flag, the probability maximising F1 on flag-labelled validation photos.
* Out of distribution: class-conditional Gaussians with a shared covariance of the training
  embeddings (Mahalanobis, Lee et al., 2018). 1280-d embeddings from ~1k photos give a singular
  sample covariance, so it is shrunk (Ledoit-Wolf) before inversion; the threshold is the
  ``ood_quantile`` of the *validation* photos' scores (see :func:`fit_ood` for why not training's).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.covariance import LedoitWolf
from sklearn.metrics import precision_recall_curve

from model.bundle import Decision
from model.decision import logit, sigmoid
from model.flags import FLAG_NAMES
from model.ood import MahalanobisOOD
from training.checkpoint import OODReference
from training.config import CalibrationConfig

TEMPERATURE_BOUNDS = (0.05, 20.0)


def calibrated_probability(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Counterfeit probability ``sigmoid(logit / T)``, as the serving graph computes it."""
    return sigmoid(np.asarray(logits, dtype=np.float64) / temperature)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the log-loss of ``sigmoid(logits / T)`` against 0/1 ``labels``.

    Searched in log space within :data:`TEMPERATURE_BOUNDS`; perfectly separable validation data
    pushes ``T`` to the lower bound (probabilities near 0 and 1), which is what such data supports.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        # log(1 + exp(-s)) for y=1 and log(1 + exp(s)) for y=0, computed stably
        return float(np.mean(np.logaddexp(0.0, np.where(y > 0.5, -s, s))))

    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def _between(lower: float, upper: float | None) -> float:
    """A probability half-way in log-odds between two scores (or a step above ``lower``)."""
    a = logit(lower)
    b = a + 2.0 if upper is None else logit(upper)
    return sigmoid((a + b) / 2.0)


def counterfeit_threshold(p_genuine: np.ndarray, p_all: np.ndarray, max_rate: float) -> float:
    """Lowest threshold accusing at most ``max_rate`` of the genuine photos (``p >= t``).

    Args:
        p_genuine: Calibrated counterfeit probabilities of genuine validation photos.
        p_all: Those of all validation photos (the threshold falls between two of them).
        max_rate: Largest share of genuine photos allowed at or above the threshold.
    """
    neg = np.sort(np.asarray(p_genuine, dtype=np.float64))[::-1]
    allowed = int(np.floor(max_rate * len(neg) + 1e-9))
    if allowed >= len(neg):
        return 0.0
    pivot = neg[allowed]  # the highest genuine score that must stay below the threshold
    above = np.asarray(p_all, dtype=np.float64)
    above = above[above > pivot]
    return _between(pivot, float(above.min()) if len(above) else None)


def genuine_threshold(p_counterfeit: np.ndarray, p_all: np.ndarray, max_rate: float) -> float:
    """Highest threshold letting at most ``max_rate`` of the counterfeits through (``p <= t``)."""
    pos = np.sort(np.asarray(p_counterfeit, dtype=np.float64))
    allowed = int(np.floor(max_rate * len(pos) + 1e-9))
    if allowed >= len(pos):
        return 1.0
    pivot = pos[allowed]  # the lowest counterfeit score that must stay above the threshold
    below = np.asarray(p_all, dtype=np.float64)
    below = below[below < pivot]
    if not len(below):
        return sigmoid(logit(float(pivot)) - 1.0)
    return _between(float(below.max()), pivot)


def flag_thresholds(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Per-flag threshold maximising F1 on flag-labelled photos; 0.5 where a flag has no positives.

    Args:
        probs: ``(N, F)`` flag probabilities.
        targets: ``(N, F)`` 0/1 labels.
        mask: ``(N,)`` 1 where the photo has flag labels.
    """
    keep = np.asarray(mask) > 0.5
    out: dict[str, float] = {}
    for j, name in enumerate(FLAG_NAMES):
        y, p = targets[keep, j], probs[keep, j]
        if y.sum() == 0 or y.sum() == len(y):
            out[name] = 0.5
            continue
        precision, recall, thresholds = precision_recall_curve(y, p)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        best = float(thresholds[int(np.argmax(f1))])
        lower = p[p < best]
        out[name] = _between(float(lower.max()), best) if len(lower) else best
    return out


def fit_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    flag_probs: np.ndarray,
    flag_targets: np.ndarray,
    flag_mask: np.ndarray,
    cfg: CalibrationConfig,
) -> Decision:
    """All decision settings from validation outputs (``min_sharpness`` as configured, 0 when unset).

    Args:
        logits: ``(N,)`` uncalibrated counterfeit logits.
        labels: ``(N,)`` 1 = counterfeit.
        flag_probs: ``(N, F)``; flag_targets: ``(N, F)``; flag_mask: ``(N,)`` as in :func:`flag_thresholds`.
        cfg: The run's calibration section.
    """
    labels = np.asarray(labels)
    temperature = fit_temperature(logits, labels)
    p = calibrated_probability(logits, temperature)
    t_c = counterfeit_threshold(p[labels == 0], p, cfg.max_false_accusation_rate)
    t_g = min(genuine_threshold(p[labels == 1], p, cfg.max_miss_rate), t_c)
    return Decision(
        temperature=temperature,
        counterfeit_threshold=t_c,
        genuine_threshold=t_g,
        max_false_accusation_rate=cfg.max_false_accusation_rate,
        max_miss_rate=cfg.max_miss_rate,
        flag_thresholds=flag_thresholds(flag_probs, flag_targets, flag_mask),
        min_image_side=cfg.min_image_side,
        min_sharpness=cfg.min_sharpness or 0.0,
    )


def fit_min_sharpness(sharpness_values: np.ndarray, quantile: float) -> float:
    """The sharpness below which a photo is blurrier than nearly all training photos.

    Args:
        sharpness_values: :func:`model.imaging.sharpness` of the (unaugmented) training inputs.
        quantile: Share of training photos that fall below the threshold.
    """
    return (
        float(np.quantile(np.asarray(sharpness_values, dtype=np.float64), quantile)) if quantile > 0 else 0.0
    )


def fit_ood(
    embeddings: np.ndarray,
    labels: np.ndarray,
    quantile: float,
    *,
    held_out: np.ndarray | None = None,
) -> OODReference:
    """Class-conditional Mahalanobis reference with a Ledoit-Wolf shared covariance.

    The statistics come from the training embeddings. The threshold is the ``quantile`` of the
    ``held_out`` photos' scores when given (validation photos: the network has not fitted them,
    so they score like the new in-distribution photos serving will see), else of the training
    photos' own scores. Training photos score far lower than unseen ones once the network has
    fitted them (the first demo run flagged 100% of its test photos with a training-score
    threshold), so pass ``held_out`` whenever there is one.

    Args:
        embeddings: ``(N, D)`` training embeddings (no augmentation).
        labels: ``(N,)`` class index per row (0 genuine, 1 counterfeit).
        quantile: Share of in-distribution photos that must score at or below the threshold.
        held_out: ``(M, D)`` embeddings of photos the network did not train on.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    classes = sorted(set(y.tolist()))
    means = np.stack([e[y == c].mean(axis=0) for c in classes])  # (C, D)
    residuals = e - means[np.searchsorted(classes, y)]
    lw = LedoitWolf(assume_centered=True).fit(residuals)
    stats = MahalanobisOOD(means=means.astype(np.float32), precision=lw.precision_.astype(np.float32))
    scores = stats.score(e if held_out is None else np.asarray(held_out, dtype=np.float64))
    return OODReference(stats=stats, threshold=float(np.quantile(scores, quantile)), quantile=quantile)
