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

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import beta
from sklearn.covariance import LedoitWolf
from sklearn.metrics import precision_recall_curve

from model.bundle import Decision
from model.decision import logit, sigmoid
from model.flags import FLAG_NAMES
from model.ood import KnnOOD, MahalanobisOOD, l2_normalise
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


def rate_upper_bound(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen as ``k`` events in ``n`` trials.

    With probability ``confidence`` over the draw of the ``n`` photos, the true rate is below it.
    """
    if n <= 0:
        return 1.0
    return 1.0 if k >= n else float(beta.ppf(confidence, k + 1, n - k))


def allowed_errors(n: int, max_rate: float, confidence: float | None) -> int:
    """How many of ``n`` held-out photos may fall on the wrong side of a threshold.

    Without ``confidence``: ``floor(max_rate * n)`` (the rate on these photos). With it: the
    largest ``k`` whose :func:`rate_upper_bound` stays within ``max_rate``, so the rate holds for
    new photos like these with that confidence; 0 when even ``k = 0`` cannot promise it (too few
    photos: the bound then exceeds ``max_rate``, and :func:`fit_calibration` records it).
    """
    if confidence is None:
        return int(np.floor(max_rate * n + 1e-9))
    k = 0
    while k + 1 < n and rate_upper_bound(k + 1, n, confidence) <= max_rate:
        k += 1
    return k


def counterfeit_threshold(
    p_genuine: np.ndarray, p_all: np.ndarray, max_rate: float, confidence: float | None = None
) -> float:
    """Lowest threshold accusing at most ``max_rate`` of the genuine photos (``p >= t``).

    Args:
        p_genuine: Calibrated counterfeit probabilities of genuine held-out photos.
        p_all: Those of all held-out photos (the threshold falls between two of them).
        max_rate: Largest share of genuine photos allowed at or above the threshold.
        confidence: When given, the rate must hold with this confidence (:func:`allowed_errors`).
    """
    neg = np.sort(np.asarray(p_genuine, dtype=np.float64))[::-1]
    allowed = allowed_errors(len(neg), max_rate, confidence)
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


def flag_thresholds(
    probs: np.ndarray,
    targets: np.ndarray,
    mask: np.ndarray,
    *,
    trained: Sequence[str],
    precision: float,
    min_positives: int,
) -> dict[str, float]:
    """Thresholds of the flags worth raising: the lowest at which a raised flag is right often enough.

    Per trained flag, the lowest threshold whose precision on the held-out flag-labelled photos is
    at least ``precision`` (so it catches as many as it can while a raised flag is right that
    often). A flag is left out, and never raised, when its training photos had no positives
    (``trained``), the held-out photos have fewer than ``min_positives``, or no threshold reaches
    ``precision``: a flag the data cannot vouch for is noise to an investigator.

    Args:
        probs: ``(N, F)`` flag probabilities of held-out photos, flags in :data:`FLAG_NAMES` order.
        targets: ``(N, F)`` 0/1 labels.
        mask: ``(N,)`` 1 where the photo has flag labels.
        trained: Flags with positives among the training photos.
        precision: Required precision of a raised flag.
        min_positives: Fewest held-out positives to set a threshold on.

    Returns:
        ``{flag: threshold}`` for the flags kept, in :data:`FLAG_NAMES` order.
    """
    keep = np.asarray(mask) > 0.5
    out: dict[str, float] = {}
    for j, name in enumerate(FLAG_NAMES):
        y, p = targets[keep, j], probs[keep, j]
        if name not in trained or y.sum() < min_positives or y.sum() == len(y):
            continue
        prec, _, thresholds = precision_recall_curve(y, p)
        ok = np.flatnonzero(prec[:-1] >= precision)
        if not len(ok):
            continue
        lowest = float(thresholds[ok[0]])
        lower = p[p < lowest]
        out[name] = _between(float(lower.max()), lowest) if len(lower) else lowest
    return out


def labelled_flags(targets: np.ndarray, mask: np.ndarray) -> tuple[str, ...]:
    """Flags with at least one positive among the flag-labelled photos (``(N, F)``, ``(N,)``)."""
    keep = np.asarray(mask) > 0.5
    return tuple(name for j, name in enumerate(FLAG_NAMES) if targets[keep, j].sum() > 0)


def fit_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    flag_probs: np.ndarray,
    flag_targets: np.ndarray,
    flag_mask: np.ndarray,
    cfg: CalibrationConfig,
    *,
    trained: Sequence[str] = FLAG_NAMES,
) -> Decision:
    """All decision settings from held-out outputs (``min_sharpness`` as configured, 0 when unset).

    Args:
        logits: ``(N,)`` uncalibrated counterfeit logits of held-out photos (validation, or
            out-of-fold predictions of every photo).
        labels: ``(N,)`` 1 = counterfeit.
        flag_probs: ``(N, F)``; flag_targets: ``(N, F)``; flag_mask: ``(N,)`` as in :func:`flag_thresholds`.
        cfg: The run's calibration section.
        trained: Flags with positives among the training photos (:func:`labelled_flags`).
    """
    labels = np.asarray(labels)
    temperature = fit_temperature(logits, labels)
    p = calibrated_probability(logits, temperature)
    t_c = counterfeit_threshold(p[labels == 0], p, cfg.max_false_accusation_rate, cfg.far_confidence)
    t_g = min(genuine_threshold(p[labels == 1], p, cfg.max_miss_rate), t_c)
    flags = flag_thresholds(
        flag_probs,
        flag_targets,
        flag_mask,
        trained=trained,
        precision=cfg.flag_precision,
        min_positives=cfg.min_flag_positives,
    )
    return Decision(
        temperature=temperature,
        counterfeit_threshold=t_c,
        genuine_threshold=t_g,
        max_false_accusation_rate=cfg.max_false_accusation_rate,
        max_miss_rate=cfg.max_miss_rate,
        flag_thresholds=flags,
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


def fit_knn_ood(
    embeddings: np.ndarray,
    held_out_scores: np.ndarray,
    *,
    k: int,
    quantile: float,
    max_reference: int,
    seed: int = 0,
) -> OODReference:
    """k-nearest-neighbour reference of the training embeddings (:class:`model.ood.KnnOOD`).

    Args:
        embeddings: ``(N, D)`` embeddings of the training photos (no augmentation).
        held_out_scores: kNN scores of in-distribution photos the reference does not contain
            (validation photos against the training ones, or each fold against the others): the
            threshold is their ``quantile``, so about ``1 - quantile`` of new in-distribution photos
            are called out of distribution.
        k: The neighbour whose distance is the score.
        quantile: Share of those photos that must pass.
        max_reference: Keep at most this many rows (a seeded sample): serving compares every photo
            with every row.
        seed: Seed of that sample.
    """
    ref = l2_normalise(embeddings)
    if len(ref) > max_reference:
        keep = np.sort(np.random.default_rng(seed).choice(len(ref), max_reference, replace=False))
        ref = ref[keep]
    stats = KnnOOD(reference=ref, k=min(k, len(ref)))
    threshold = float(np.quantile(np.asarray(held_out_scores, dtype=np.float64), quantile))
    return OODReference(stats=stats, threshold=threshold, quantile=quantile)


def knn_scores(reference: np.ndarray, photos: np.ndarray, k: int) -> np.ndarray:
    """kNN scores of ``photos`` (``(M, D)``) against the embeddings ``reference`` (``(N, D)``)."""
    return KnnOOD(reference=l2_normalise(reference), k=min(k, len(reference))).score(photos)


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
