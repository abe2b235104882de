"""In-memory search structures of the reference gallery: perceptual hashes and embeddings.

* :class:`HashIndex`: every reference's window hashes (:data:`serving.gallery.phash.REFERENCE_WINDOWS`)
  in one ``uint64`` array, searched exactly (XOR + popcount) for the smallest distance per reference.
  Beyond ``exact_limit`` references only the whole-photo hashes are scanned (a 1M-entry scan of
  every window costs about 40 ms); the windows of the embedding's candidates are still compared.
* :class:`VectorIndex`: embeddings projected to :data:`PROJECTED_DIM` dimensions (a fixed random
  orthonormal projection keeps cosines to within a few hundredths) and searched by brute force
  (numpy), or beyond ``exact_limit`` by a faiss IVF index (inner product on unit vectors).

Both hold row ids of the SQLite table; removal is by id.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from serving.gallery.phash import hamming

PROJECTED_DIM = 256
EXACT_LIMIT = 100_000


@lru_cache(maxsize=8)
def projection(dim: int) -> np.ndarray:
    """``(dim, PROJECTED_DIM)`` float32 with orthonormal columns (seeded: the same in every process)."""
    if dim <= PROJECTED_DIM:
        return np.eye(dim, dtype=np.float32)
    g = np.random.default_rng(20261202).normal(size=(dim, PROJECTED_DIM))
    q, _ = np.linalg.qr(g)
    return np.ascontiguousarray(q * np.sqrt(dim / PROJECTED_DIM), dtype=np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def project(embeddings: np.ndarray) -> np.ndarray:
    """``(N, D)`` embeddings -> ``(N, PROJECTED_DIM)`` unit vectors for the index."""
    e = unit(embeddings)
    return unit(e @ projection(e.shape[1]))


class HashIndex:
    """Window hashes of every reference; ``nearest`` gives each reference's smallest distance.

    Windows are kept in reference-id order (ids only grow), so a reference's windows are found by
    binary search; the whole-photo hashes are also kept apart for the scan beyond ``exact_limit``.
    """

    def __init__(self, exact_limit: int = EXACT_LIMIT) -> None:
        self.exact_limit = exact_limit
        self._values = np.zeros(0, dtype=np.uint64)  # every window, by reference id
        self._refs = np.zeros(0, dtype=np.int64)
        self._whole = np.zeros(0, dtype=np.uint64)  # whole-photo hash of each reference
        self._whole_refs = np.zeros(0, dtype=np.int64)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._whole_refs)

    def add_many(self, ref_ids: np.ndarray, hashes: list[list[int]]) -> None:
        """Add references (``ref_ids[i]`` has ``hashes[i]``, the whole photo's first)."""
        ids = np.asarray(ref_ids, dtype=np.int64)
        values = np.array([h for hs in hashes for h in hs], dtype=np.uint64)
        refs = np.repeat(ids, [len(hs) for hs in hashes])
        whole = np.array([hs[0] for hs in hashes], dtype=np.uint64)
        with self._lock:
            all_refs = np.concatenate([self._refs, refs])
            all_values = np.concatenate([self._values, values])
            whole_refs = np.concatenate([self._whole_refs, ids])
            all_whole = np.concatenate([self._whole, whole])
            if len(self._refs) and len(refs) and refs.min() < self._refs[-1]:  # keep id order
                order = np.argsort(all_refs, kind="stable")
                all_refs, all_values = all_refs[order], all_values[order]
                worder = np.argsort(whole_refs, kind="stable")
                whole_refs, all_whole = whole_refs[worder], all_whole[worder]
            self._refs, self._values = all_refs, all_values
            self._whole_refs, self._whole = whole_refs, all_whole

    def remove(self, ref_id: int) -> None:
        with self._lock:
            keep = self._refs != ref_id
            self._values, self._refs = self._values[keep], self._refs[keep]
            wkeep = self._whole_refs != ref_id
            self._whole, self._whole_refs = self._whole[wkeep], self._whole_refs[wkeep]

    def nearest(self, query: int, radius: int, candidates: np.ndarray | None = None) -> dict[int, int]:
        """``{ref_id: smallest distance}`` of references within ``radius`` bits of ``query``.

        Args:
            query: The photo's whole-photo hash.
            radius: Largest distance returned.
            candidates: References whose every window is compared even beyond ``exact_limit``.
        """
        values, refs = self._values, self._refs  # a consistent snapshot (arrays are replaced, never changed)
        whole, whole_refs = self._whole, self._whole_refs
        if len(whole_refs) == 0:
            return {}
        out: dict[int, int] = {}

        def take(r: np.ndarray, d: np.ndarray) -> None:
            hit = d <= radius
            for ref, dist in zip(r[hit].tolist(), d[hit].tolist(), strict=True):
                out[ref] = min(dist, out.get(ref, 64))

        if len(whole_refs) <= self.exact_limit:
            take(refs, hamming(values, query))
            return out
        take(whole_refs, hamming(whole, query))
        if candidates is not None and len(candidates):
            cand = np.unique(np.asarray(candidates, dtype=np.int64))
            lo = np.searchsorted(refs, cand, side="left")
            hi = np.searchsorted(refs, cand, side="right")
            idx = np.concatenate([np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)])
            if len(idx):
                take(refs[idx], hamming(values[idx], query))
        return out


class VectorIndex:
    """Projected unit embeddings by reference id; top-k by inner product (cosine)."""

    def __init__(self, exact_limit: int = EXACT_LIMIT, *, nprobe: int = 32) -> None:
        self.exact_limit = exact_limit
        self.nprobe = nprobe
        self._vectors = np.zeros((0, PROJECTED_DIM), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._ann = None  # a faiss IndexIVFFlat once there are more than exact_limit vectors
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids) if self._ann is None else int(self._ann.ntotal)

    @property
    def kind(self) -> str:
        """``exact`` (numpy) or ``ivf`` (faiss)."""
        return "exact" if self._ann is None else "ivf"

    def add_many(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add projected unit vectors (:func:`project`) under ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock:
            if self._ann is not None:
                self._ann.add_with_ids(vectors, ids)
                return
            self._vectors = np.concatenate([self._vectors, vectors])
            self._ids = np.concatenate([self._ids, ids])
            if len(self._ids) > self.exact_limit:
                self._ann = self._build_ann(self._vectors, self._ids)
                self._vectors = np.zeros((0, PROJECTED_DIM), dtype=np.float32)
                self._ids = np.zeros(0, dtype=np.int64)

    def _build_ann(self, vectors: np.ndarray, ids: np.ndarray):
        import faiss

        n = len(vectors)
        nlist = int(min(8192, max(32, np.sqrt(n))))  # 1,000 lists for 1M references
        quantizer = faiss.IndexFlatIP(PROJECTED_DIM)
        ann = faiss.IndexIVFFlat(quantizer, PROJECTED_DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).choice(n, size=min(n, 40 * nlist), replace=False)]
        ann.train(sample)
        ann.add_with_ids(vectors, ids)
        ann.nprobe = self.nprobe
        return ann

    def remove(self, ref_id: int) -> None:
        with self._lock:
            if self._ann is not None:
                self._ann.remove_ids(np.array([ref_id], dtype=np.int64))
                return
            keep = self._ids != ref_id
            self._vectors, self._ids = self._vectors[keep], self._ids[keep]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, cosines)`` of the ``k`` nearest projected vectors, nearest first."""
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if self._ann is not None:
            sims, ids = self._ann.search(q, k)
            keep = ids[0] >= 0
            return ids[0][keep], sims[0][keep]
        vectors, ids = self._vectors, self._ids
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        # einsum, not BLAS: a threaded matrix-vector product stalls when the cores are busy (with
        # ONNX Runtime's threads): 12 ms instead of 1.1 ms at 10k references (docs/reuse.md)
        sims = np.einsum("ij,j->i", vectors, q[0])
        k = min(k, len(ids))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top])]
        return ids[top], sims[top]
