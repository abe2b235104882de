"""Out-of-distribution scorers of the graph's ``embedding`` output (numpy only; training and serving).

Two methods, named in ``bundle.json`` (``ood.method``) and stored in ``ood.npz``:

* ``knn`` (bundles from 2026-12 on): the cosine distance from a photo's L2-normalised embedding
  to its ``k``-th nearest neighbour among the training photos' (Sun et al., 2022). It makes no
  assumption about the shape of the training data, so it keeps working where a category's photos
  form several clusters, and a foreign photo (another category, a screenshot, a texture) lies far
  from all of them.
* ``mahalanobis`` (older bundles): the distance to the nearest class mean under a shared
  covariance (Lee et al., 2018).

Larger scores are more unusual; the bundle's threshold is set on in-distribution photos the
network did not train on, for a stated share of them to pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

OODMethod = Literal["knn", "mahalanobis"]
OOD_METHODS: tuple[str, ...] = ("knn", "mahalanobis")

_CHUNK = 256  # photos per distance block: bounds the (chunk, N) similarity matrix


class OODFileError(ValueError):
    """``ood.npz`` that cannot be used; the message says what is wrong."""


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class KnnOOD:
    """k-nearest-neighbour distance on L2-normalised embeddings.

    Attributes:
        reference: ``(N, D)`` float32 training embeddings, rows of unit length.
        k: Which neighbour's distance is the score (1 = the nearest).
    """

    reference: np.ndarray
    k: int
    method: OODMethod = "knn"

    def __post_init__(self) -> None:
        if self.reference.ndim != 2 or not len(self.reference):
            raise OODFileError(f"knn reference must be a non-empty (N, D) array, got {self.reference.shape}.")
        if not 1 <= self.k <= len(self.reference):
            raise OODFileError(
                f"k must be between 1 and the {len(self.reference)} reference rows, got {self.k}."
            )

    @property
    def dim(self) -> int:
        return int(self.reference.shape[1])

    def score(self, embedding: np.ndarray) -> np.ndarray:
        """``(B, D) -> (B,)`` cosine distance ``1 - cos`` to the ``k``-th nearest reference row."""
        e = l2_normalise(embedding)
        out = np.empty(len(e), dtype=np.float64)
        for start in range(0, len(e), _CHUNK):
            sim = e[start : start + _CHUNK] @ self.reference.T  # (b, N)
            kth = np.partition(-sim, self.k - 1, axis=1)[:, self.k - 1]  # -(k-th largest similarity)
            out[start : start + _CHUNK] = 1.0 + kth
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"reference": self.reference.astype(np.float32), "k": np.array(self.k, dtype=np.int64)}


@dataclass(frozen=True)
class MahalanobisOOD:
    """Class-conditional Gaussians with a shared covariance of the embedding."""

    means: np.ndarray  # (C, D)
    precision: np.ndarray  # (D, D), inverse of the shared covariance
    method: OODMethod = "mahalanobis"

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def score(self, embedding: np.ndarray) -> np.ndarray:
        """Minimum Mahalanobis distance over classes; ``(B, D) -> (B,)``, larger = more unusual."""
        e = np.asarray(embedding, dtype=np.float64)
        d = e[:, None, :] - self.means[None, :, :].astype(np.float64)  # (B, C, D)
        m = np.einsum("bcd,de,bce->bc", d, self.precision.astype(np.float64), d)
        return np.sqrt(np.maximum(m.min(axis=1), 0.0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"means": self.means.astype(np.float32), "precision": self.precision.astype(np.float32)}


OODStats = KnnOOD | MahalanobisOOD


def from_arrays(method: str, arrays: dict[str, np.ndarray]) -> OODStats:
    """Rebuild a scorer from what :meth:`arrays` gave (``ood.npz``, a checkpoint).

    Raises:
        OODFileError: unknown method or missing/ill-shaped arrays.
    """
    try:
        if method == "knn":
            return KnnOOD(reference=np.asarray(arrays["reference"], np.float32), k=int(arrays["k"]))
        if method == "mahalanobis":
            means, precision = np.asarray(arrays["means"]), np.asarray(arrays["precision"])
            if means.ndim != 2 or precision.shape != (means.shape[1], means.shape[1]):
                raise OODFileError(f"shapes means {means.shape}, precision {precision.shape} do not fit.")
            return MahalanobisOOD(means=means, precision=precision)
    except KeyError as exc:
        raise OODFileError(f"{method} statistics lack the array {exc}.") from None
    raise OODFileError(f"Unknown OOD method {method!r}. Allowed: {', '.join(OOD_METHODS)}.")


def save_ood(path: Path, stats: OODStats) -> None:
    """Write the scorer's arrays as an ``.npz`` (no pickles: loading it is safe)."""
    with open(path, "wb") as f:
        np.savez(f, **stats.arrays())  # type: ignore[arg-type]


def load_ood(path: Path, method: str) -> OODStats:
    """Read ``path`` written by :func:`save_ood` for ``method``.

    Raises:
        OODFileError: unreadable file, or arrays that do not make a ``method`` scorer.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError) as exc:
        raise OODFileError(f"not readable OOD statistics ({exc}).") from None
    return from_arrays(method, arrays)
