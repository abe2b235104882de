"""The out-of-distribution scorers: kNN on normalised embeddings, and Mahalanobis for older bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.ood import KnnOOD, MahalanobisOOD, OODFileError, from_arrays, l2_normalise, load_ood, save_ood


def test_knn_score_is_the_cosine_distance_to_the_kth_neighbour() -> None:
    ref = l2_normalise(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float64))
    x = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, -5.0]])
    # first row: neighbours at cos 1, 1/sqrt 2, 0, 0; second: cos 0, 0, 0, -1
    assert KnnOOD(ref, k=1).score(x) == pytest.approx([0.0, 1.0])
    assert KnnOOD(ref, k=2).score(x) == pytest.approx([1 - 1 / np.sqrt(2), 1.0])
    assert KnnOOD(ref, k=4).score(x) == pytest.approx([1.0, 2.0])
    big = np.random.default_rng(0).normal(size=(1000, 3))  # more rows than one distance block
    brute = 1 - np.sort(l2_normalise(big) @ ref.T, axis=1)[:, ::-1][:, 1]
    assert KnnOOD(ref, k=2).score(big) == pytest.approx(brute, abs=1e-6)


def test_knn_refuses_a_k_the_reference_cannot_give() -> None:
    with pytest.raises(OODFileError, match="between 1 and the 2 reference rows"):
        KnnOOD(l2_normalise(np.eye(2)), k=3)


@pytest.mark.parametrize(
    "stats",
    [
        KnnOOD(l2_normalise(np.random.default_rng(1).normal(size=(20, 8))), k=3),
        MahalanobisOOD(np.zeros((2, 8), np.float32), np.eye(8, dtype=np.float32)),
    ],
)
def test_scorers_round_trip_through_their_file(stats, tmp_path: Path) -> None:
    save_ood(tmp_path / "ood.npz", stats)
    loaded = load_ood(tmp_path / "ood.npz", stats.method)
    x = np.random.default_rng(2).normal(size=(5, 8))
    assert loaded.method == stats.method and loaded.dim == 8
    assert np.array_equal(loaded.score(x), stats.score(x))


def test_bad_files_and_methods_are_named(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(OODFileError, match="not readable"):
        load_ood(tmp_path / "junk.npz", "knn")
    with pytest.raises(OODFileError, match="lack the array 'reference'"):
        from_arrays("knn", {"means": np.zeros((1, 2))})
    with pytest.raises(OODFileError, match=r"Unknown OOD method 'lof'\. Allowed: knn, mahalanobis"):
        from_arrays("lof", {})
