"""Temperature scaling, decision thresholds, ECE and the out-of-distribution reference."""

from __future__ import annotations

import numpy as np
import pytest

from model.bundle import Decision
from model.decision import classify
from training.config import CalibrationConfig
from training.metrics import ece_noise_floor, reliability
from training.train.calibration import (
    allowed_errors,
    calibrated_probability,
    counterfeit_threshold,
    fit_calibration,
    fit_ood,
    fit_temperature,
    flag_thresholds,
    genuine_threshold,
    labelled_flags,
    rate_upper_bound,
)


def _overconfident(n: int, true_t: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose calibrated version is sigmoid(z / true_t): labels drawn from that."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z / true_t))).astype(int)
    return z, y


def test_temperature_recovers_the_true_scale_and_cuts_ece() -> None:
    z, y = _overconfident(20000, true_t=2.0)
    t = fit_temperature(z, y)
    assert t == pytest.approx(2.0, rel=0.08)
    before = reliability(calibrated_probability(z, 1.0), y).ece
    after = reliability(calibrated_probability(z, t), y).ece
    assert after < 0.02 < before


def test_ece_is_zero_for_perfect_calibration_and_large_for_confident_errors() -> None:
    p = np.array([0.2] * 5 + [0.8] * 5)
    y = np.array([1, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    assert reliability(p, y, bins=10).ece == pytest.approx(0.0, abs=1e-12)
    assert reliability(np.array([0.99, 0.01]), np.array([0, 1])).ece == pytest.approx(0.99)


def test_counterfeit_threshold_keeps_false_accusations_within_the_rate() -> None:
    rng = np.random.default_rng(1)
    genuine = rng.beta(2, 8, 300)
    fakes = rng.beta(8, 2, 300)
    allp = np.concatenate([genuine, fakes])
    for rate in (0.01, 0.05, 0.2):
        t = counterfeit_threshold(genuine, allp, rate)
        assert np.mean(genuine >= t) <= rate
        # and it is the lowest such: the next genuine score down would break the rate
        assert np.mean(genuine >= np.sort(genuine)[::-1][int(rate * 300)]) > rate


def test_genuine_threshold_keeps_misses_within_the_rate() -> None:
    rng = np.random.default_rng(2)
    genuine, fakes = rng.beta(2, 6, 200), rng.beta(6, 2, 200)
    t = genuine_threshold(fakes, np.concatenate([genuine, fakes]), 0.05)
    assert np.mean(fakes <= t) <= 0.05
    assert t > np.quantile(genuine, 0.5)  # not trivially tiny


def test_fit_calibration_orders_thresholds_and_the_decision_rules_honour_them() -> None:
    z, y = _overconfident(2000, true_t=1.5, seed=3)
    flags = np.zeros((len(z), 7))
    cal = fit_calibration(z, y, flags, flags, np.zeros(len(z)), CalibrationConfig())
    assert cal.genuine_threshold <= cal.counterfeit_threshold
    decision = Decision(
        temperature=cal.temperature,
        counterfeit_threshold=cal.counterfeit_threshold,
        genuine_threshold=cal.genuine_threshold,
        max_false_accusation_rate=0.01,
        max_miss_rate=0.05,
        flag_thresholds={},
    )
    p = calibrated_probability(z, cal.temperature)
    verdicts = np.array([classify(float(v), decision).verdict for v in p])
    assert np.mean(verdicts[y == 0] == "counterfeit") <= 0.01
    assert np.mean(verdicts[y == 1] == "genuine") <= 0.05
    assert 0 < np.mean(verdicts == "inconclusive") < 0.6


def test_flag_thresholds_reach_the_precision_and_drop_flags_the_data_cannot_vouch_for() -> None:
    # logo_font: positives score 0.9, 0.8, 0.6; a negative at 0.7 sits among them
    logo = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.1]
    logo_y = [1, 1, 0, 1, 0, 0, 0, 0]
    probs = np.zeros((8, 7))
    targets = np.zeros((8, 7))
    probs[:, 0], targets[:, 0] = logo, logo_y
    probs[:, 2], targets[:, 2] = np.linspace(0.9, 0.1, 8), [0, 1, 0, 1, 0, 1, 0, 0]  # stitch: never precise
    kw = {"precision": 0.75, "min_positives": 2}
    out = flag_thresholds(probs, targets, np.ones(8), trained=("logo_font", "stitch_irregular"), **kw)
    assert list(out) == ["logo_font"]  # stitch_irregular cannot be raised with 75 % precision: dropped
    assert 0.3 < out["logo_font"] <= 0.6  # all three positives, one false alarm: precision 3/4
    assert np.mean(targets[probs[:, 0] >= out["logo_font"], 0]) >= 0.75
    # a flag not trained, or with too few held-out positives, is never kept
    assert flag_thresholds(probs, targets, np.ones(8), trained=(), **kw) == {}
    assert (
        flag_thresholds(probs, targets, np.ones(8), trained=("logo_font",), precision=0.75, min_positives=4)
        == {}
    )
    assert labelled_flags(targets, np.ones(8)) == ("logo_font", "stitch_irregular")
    assert labelled_flags(targets, np.zeros(8)) == ()  # unlabelled photos train no flag


def test_the_false_accusation_rate_holds_with_the_stated_confidence() -> None:
    # 0 of 299 is the fewest photos that promise 1 % at 95 % (1 - 0.05 ** (1 / 299) < 0.01)
    assert rate_upper_bound(0, 299, 0.95) < 0.01 < rate_upper_bound(0, 298, 0.95)
    assert allowed_errors(1000, 0.01, None) == 10  # on the photos alone
    k = allowed_errors(1000, 0.01, 0.95)
    assert 0 < k < 10 and rate_upper_bound(k, 1000, 0.95) <= 0.01 < rate_upper_bound(k + 1, 1000, 0.95)
    assert allowed_errors(100, 0.01, 0.95) == 0  # too few photos to promise it
    rng = np.random.default_rng(5)
    genuine, fakes = rng.beta(2, 6, 1000), rng.beta(6, 2, 1000)
    both = np.concatenate([genuine, fakes])
    bounded = counterfeit_threshold(genuine, both, 0.01, 0.95)
    assert bounded > counterfeit_threshold(genuine, both, 0.01)  # stricter than the point estimate
    assert np.sum(genuine >= bounded) == k
    # over fresh draws from the same population the accusation rate stays below 1 % (here: always)
    rates = [np.mean(rng.beta(2, 6, 5000) >= bounded) for _ in range(20)]
    assert max(rates) < 0.01


def test_ood_reference_flags_far_embeddings_and_keeps_the_quantile() -> None:
    rng = np.random.default_rng(4)
    d, n = 256, 400  # more dimensions than a class has samples: needs shrinkage
    basis = rng.normal(size=(16, d))
    train = rng.normal(size=(n, 16)) @ basis + rng.normal(0, 0.1, (n, d))
    labels = np.arange(n) % 2
    train[labels == 1] += 0.5
    ref = fit_ood(train, labels, quantile=0.95)
    stats = ref.stats
    scores = stats.score(train)
    assert np.mean(scores <= ref.threshold) == pytest.approx(0.95, abs=0.01)
    held_out = rng.normal(size=(200, 16)) @ basis + rng.normal(0, 0.1, (200, d))
    far = rng.normal(0, 3, (200, d))
    assert np.mean(stats.score(held_out) > ref.threshold) < 0.2
    assert np.mean(stats.score(far) > ref.threshold) == 1.0
    assert ref.stats.means.shape == (2, d) and ref.stats.precision.shape == (d, d)


def test_ood_threshold_from_held_out_photos_does_not_flag_new_in_distribution_photos() -> None:
    """A memorised training set scores low; the held-out threshold keeps new photos in."""
    rng = np.random.default_rng(5)
    d = 128
    centres = rng.normal(size=(2, d))
    train = centres[np.arange(300) % 2] + rng.normal(0, 0.3, (300, d))  # tight: fitted by the network
    fresh = centres[np.arange(300) % 2] + rng.normal(0, 1.0, (300, d))  # what unseen photos look like
    labels = np.arange(300) % 2
    naive = fit_ood(train, labels, 0.99)
    held = fit_ood(train, labels, 0.99, held_out=fresh[:150])
    new = fresh[150:]
    assert np.mean(naive.stats.score(new) > naive.threshold) > 0.9
    assert np.mean(held.stats.score(new) > held.threshold) < 0.05
    assert np.all(held.stats.score(rng.normal(0, 4, (50, d))) > held.threshold)


def test_ece_noise_floor_is_what_calibrated_labels_show() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 200)
    floor = ece_noise_floor(p, 15)
    assert 0.02 < floor < 0.15  # 200 photos: sampling alone gives several hundredths
    assert ece_noise_floor(rng.uniform(0, 1, 20000), 15) < floor / 4  # shrinks like 1/sqrt(n)
    sure = np.r_[np.zeros(100), np.ones(100)]
    assert ece_noise_floor(sure, 15) == 0.0  # certain predictions: no scatter
