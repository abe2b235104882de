"""The foreign-photo corpus: every category, the same photos on every call, made without a network."""

from __future__ import annotations

import numpy as np

from training.evaluate.foreign import CATEGORIES, foreign_corpus


def test_corpus_has_every_category_and_is_reproducible() -> None:
    rows = foreign_corpus(n_synthetic=4)
    cats = [c for c, _, _ in rows]
    assert set(cats) == set(CATEGORIES)
    assert min(cats.count(c) for c in CATEGORIES) >= 4 and len(rows) >= 60
    for _, name, px in rows:
        assert px.dtype == np.uint8 and px.ndim == 3 and px.shape[2] == 3 and min(px.shape[:2]) >= 32, name
    again = foreign_corpus(n_synthetic=4)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(rows, again, strict=True))


def test_synthetic_goods_can_be_left_out() -> None:
    rows = foreign_corpus(synthetic_goods=False)
    assert "synthetic_goods" not in {c for c, _, _ in rows}
