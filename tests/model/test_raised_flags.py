"""How flags combine over an item's photos (max over usable photos, threshold per flag)."""

from __future__ import annotations

import pytest

from model.bundle import Decision
from model.decision import FlagHit, raised_flags

FLAGS = ("a", "b", "c")


def _decision() -> Decision:
    return Decision(
        temperature=1.0,
        counterfeit_threshold=0.7,
        genuine_threshold=0.3,
        max_false_accusation_rate=0.01,
        max_miss_rate=0.05,
        flag_thresholds={"a": 0.5, "b": 0.8, "c": 0.5},
    )


def test_a_tell_on_one_photo_is_raised_with_that_photo() -> None:
    probs = [[0.1, 0.2, 0.1], [0.9, 0.85, 0.2]]
    hits = raised_flags(probs, [True, True], _decision(), FLAGS)
    assert hits == (FlagHit("a", 0.9, 1), FlagHit("b", 0.85, 1))


def test_per_flag_thresholds_and_order() -> None:
    hits = raised_flags([[0.6, 0.79, 0.95]], [True], _decision(), FLAGS)
    assert [h.name for h in hits] == ["c", "a"]  # b is below its own 0.8 threshold


def test_unusable_photos_raise_nothing() -> None:
    probs = [[0.99, 0.99, 0.99], [0.1, 0.1, 0.6]]
    assert raised_flags(probs, [False, True], _decision(), FLAGS) == (FlagHit("c", 0.6, 1),)
    assert raised_flags(probs, [False, False], _decision(), FLAGS) == ()


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match=r"must be \(N, 3\)"):
        raised_flags([[0.1, 0.2]], [True], _decision(), FLAGS)
    with pytest.raises(ValueError, match="len\\(usable\\)"):
        raised_flags([[0.1, 0.2, 0.3]], [True, False], _decision(), FLAGS)


def test_a_model_without_flags_raises_none() -> None:
    """A bundle trained without flag labels has (N, 0) flag probabilities and no thresholds."""
    import numpy as np

    no_flags = _decision().model_copy(update={"flag_thresholds": {}})
    assert raised_flags(np.zeros((2, 0), np.float32), [True, True], no_flags, ()) == ()
    assert raised_flags([[], []], [True, False], no_flags, ()) == ()
    with pytest.raises(ValueError, match=r"must be \(N, 0\) with N = len\(usable\) = 1"):
        raised_flags(np.zeros((2, 0)), [True], no_flags, ())
    with pytest.raises(ValueError, match=r"must be \(N, 3\)"):
        raised_flags(np.zeros((1, 0)), [True], _decision(), FLAGS)
