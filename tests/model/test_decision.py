"""Verdict rules shared by evaluation and serving."""

from __future__ import annotations

import factories
import numpy as np
import pytest

from model.bundle import Decision
from model.decision import (
    REASON_BLURRY,
    REASON_LOW_CONFIDENCE,
    REASON_NO_USABLE,
    REASON_OOD,
    REASON_TOO_SMALL,
    classify,
    judge_image,
    judge_item,
    map_box,
    usability_reasons,
)


@pytest.fixture
def decision() -> Decision:
    return factories.decision()


@pytest.mark.parametrize(
    ("p", "verdict"),
    [(0.95, "counterfeit"), (0.8, "counterfeit"), (0.5, "inconclusive"), (0.3, "genuine"), (0.01, "genuine")],
)
def test_classify_thresholds(decision: Decision, p: float, verdict: str) -> None:
    out = classify(p, decision)
    assert out.verdict == verdict
    assert out.authenticity_score == pytest.approx(1 - p)
    assert (out.reasons == (REASON_LOW_CONFIDENCE,)) == (verdict == "inconclusive")


def test_usability_reasons(decision: Decision) -> None:
    assert (
        usability_reasons(min_side=500, sharpness=50, ood_score=1.0, decision=decision, ood_threshold=2.0)
        == ()
    )
    assert usability_reasons(
        min_side=100, sharpness=5, ood_score=3.0, decision=decision, ood_threshold=2.0
    ) == (
        REASON_TOO_SMALL,
        REASON_BLURRY,
        REASON_OOD,
    )


def test_unusable_image_is_inconclusive_even_if_confident(decision: Decision) -> None:
    out = judge_image(0.99, (REASON_OOD,), decision)
    assert out.verdict == "inconclusive" and out.reasons == (REASON_OOD,)


def test_item_averages_logits_of_usable_photos_only(decision: Decision) -> None:
    # Two confident counterfeit photos and one out-of-distribution photo that looks genuine.
    out = judge_item([(0.9, ()), (0.9, ()), (0.01, (REASON_OOD,))], decision)
    assert out.verdict == "counterfeit" and out.counterfeit_probability == pytest.approx(0.9)
    # Logit mean of 0.9 and 0.1 is exactly 0.5: inconclusive, not the arithmetic mean's accident.
    out = judge_item([(0.9, ()), (0.1, ())], decision)
    assert out.verdict == "inconclusive" and out.counterfeit_probability == pytest.approx(0.5)


def test_item_without_usable_photo_says_why(decision: Decision) -> None:
    out = judge_item([(0.99, (REASON_TOO_SMALL,)), (0.99, (REASON_BLURRY, REASON_TOO_SMALL))], decision)
    assert out.verdict == "inconclusive"
    assert out.reasons == (REASON_NO_USABLE, REASON_TOO_SMALL, REASON_BLURRY)
    with pytest.raises(ValueError):
        judge_item([], decision)


def test_decision_refuses_inverted_thresholds() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        Decision(
            temperature=1.0,
            counterfeit_threshold=0.2,
            genuine_threshold=0.6,
            max_false_accusation_rate=0.01,
            max_miss_rate=0.05,
            flag_thresholds={},
        )


def test_map_box_spans_connected_peak_region() -> None:
    a = np.zeros((7, 7))
    a[2:4, 4:6] = 1.0  # the hot region
    a[2, 4] = 2.0  # its peak
    a[6, 0] = 0.9  # a separate weaker blob, not connected
    box, peak = map_box(a, (224, 224), rel_threshold=0.4)
    assert box == (4 * 32, 2 * 32, 6 * 32, 4 * 32)
    assert peak == (4.5 * 32, 2.5 * 32)


def test_map_box_of_flat_map_is_one_cell() -> None:
    box, _ = map_box(np.zeros((2, 2)), (64, 64))
    assert box == (0, 0, 32, 32)
