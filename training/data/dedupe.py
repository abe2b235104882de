"""Near-duplicate photos by perceptual hashing (``imagehash``), robust to mirroring and quarter turns.

Each photo gets the 64-bit DCT hash (``imagehash.phash``) of itself and of its seven
mirrored/rotated versions; two photos are near-duplicates when the smallest Hamming distance
between one's hash and any of the other's eight is at most :data:`DUPLICATE_THRESHOLD`.

Why pHash at 8 bits: on the real sneakers set (1,099 photos, 603,351 pairs; random pairs sit at
a median of 32 bits) the 14 pairs at <= 8 bits (dihedral) were checked by eye: 13 are one photo
re-encoded, cropped, mirrored or turned, or the same shoes shot twice in one scene; at 10 bits 21
more pairs appear, mostly different shoes on a similar background. aHash and wHash spread random
pairs too close to that range (0.1 % of random pairs below 9 bits) and dHash separates less
cleanly. pHash distances are even (half the bits are set), so 8 and 9 are the same threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DUPLICATE_THRESHOLD = 8
"""Largest Hamming distance (of 64 bits) at which two photos count as near-duplicates."""

HASH_DRAFT_SIZE = 128
"""JPEGs are decoded at reduced DCT scale down to this side before hashing (pHash works on 32x32)."""

VARIANTS: tuple[str, ...] = (
    "identity",
    "mirror",
    "flip",
    "rot90",
    "rot180",
    "rot270",
    "transpose",
    "transverse",
)


@dataclass(frozen=True)
class DuplicatePair:
    """Two near-duplicate photos (indices into the hashed list) and their distance in bits."""

    i: int
    j: int
    distance: int


def phash_variants(pixels: np.ndarray) -> np.ndarray:
    """The pHash of an RGB photo and of its 7 mirrored/rotated versions.

    Args:
        pixels: ``(H, W, 3)`` uint8.

    Returns:
        ``(8,)`` uint64 in :data:`VARIANTS` order.
    """
    import imagehash
    from PIL import Image

    transposes = (
        None,
        Image.Transpose.FLIP_LEFT_RIGHT,
        Image.Transpose.FLIP_TOP_BOTTOM,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
    )
    # phash reduces to 32x32 grey first; doing that once makes the 8 variants nearly free.
    small = Image.fromarray(pixels).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    out = np.empty(len(transposes), np.uint64)
    for k, op in enumerate(transposes):
        bits = imagehash.phash(small if op is None else small.transpose(op)).hash.reshape(-1)
        out[k] = np.packbits(bits).view(">u8")[0]
    return out


def hash_files(
    paths: Sequence[Path], *, on_error: Callable[[int, Exception], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode (through :func:`model.imaging.decode_image`) and hash every file.

    Args:
        paths: Image files.
        on_error: Called with ``(index, exception)`` for a file that cannot be read or decoded.

    Returns:
        ``(hashes, ok)``: ``(N, 8)`` uint64 and an ``(N,)`` bool mask of files that hashed.
    """
    from model.imaging import ImageError, decode_image

    hashes = np.zeros((len(paths), len(VARIANTS)), np.uint64)
    ok = np.zeros(len(paths), bool)
    for k, path in enumerate(paths):
        try:
            decoded = decode_image(Path(path).read_bytes(), draft_size=HASH_DRAFT_SIZE)
        except (OSError, ImageError) as exc:
            if on_error is not None:
                on_error(k, exc)
            continue
        hashes[k] = phash_variants(decoded.pixels)
        ok[k] = True
    return hashes, ok


def near_duplicate_pairs(
    hashes: np.ndarray, *, threshold: int = DUPLICATE_THRESHOLD, mask: np.ndarray | None = None
) -> list[DuplicatePair]:
    """Every pair within ``threshold`` bits under any of the 8 orientations.

    Brute force in blocks of rows (0.13 s for the 1,099 sneakers photos; time grows with N
    squared), fine for collections up to a few tens of thousands of photos.

    Args:
        hashes: ``(N, 8)`` uint64 from :func:`hash_files`.
        threshold: Largest distance reported.
        mask: ``(N,)`` bool; rows that are false (unreadable files) take no part.

    Returns:
        Pairs with ``i < j``, sorted by distance then indices.
    """
    n = len(hashes)
    idx = np.arange(n) if mask is None else np.nonzero(mask)[0]
    sub = hashes[idx]
    base = sub[:, 0]
    pairs: list[DuplicatePair] = []
    block = 512
    for start in range(0, len(idx), block):
        rows = base[start : start + block]
        # (b, M, 8) distances from each row's upright hash to every orientation of every photo.
        dist = np.bitwise_count(rows[:, None, None] ^ sub[None, :, :]).min(axis=2)
        for a, b in zip(*np.nonzero(dist <= threshold), strict=True):
            i, j = int(idx[start + a]), int(idx[b])
            if i != j:
                pairs.append(DuplicatePair(min(i, j), max(i, j), int(dist[a, b])))
    best: dict[tuple[int, int], int] = {}
    for p in pairs:  # (i, j) and (j, i) can differ by a bit or two; keep the smaller
        key = (p.i, p.j)
        best[key] = min(best.get(key, 64), p.distance)
    return sorted(
        (DuplicatePair(i, j, d) for (i, j), d in best.items()), key=lambda p: (p.distance, p.i, p.j)
    )


def identical_pairs(digests: Sequence[str | None]) -> list[tuple[int, int]]:
    """Pairs ``(first, k)`` of entries with the same content digest (``None``: unreadable, skipped).

    Byte-identical files are one photo whatever their manifest rows say: unlike perceptual
    near-duplicates, they join even photos of two different named items.
    """
    first: dict[str, int] = {}
    pairs = []
    for k, d in enumerate(digests):
        if d is None:
            continue
        j = first.setdefault(d, k)
        if j != k:
            pairs.append((j, k))
    return pairs


def file_digests(paths: Sequence[Path]) -> list[str | None]:
    """SHA-256 of each file's bytes, ``None`` where it cannot be read."""
    import hashlib

    out: list[str | None] = []
    for path in paths:
        try:
            out.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())
        except OSError:
            out.append(None)
    return out


def clusters(n: int, pairs: Sequence[tuple[int, int]] | Sequence[DuplicatePair]) -> np.ndarray:
    """Connected components of the pair graph: ``(n,)`` int labels, 0..k-1, in first-seen order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, np.int64)
    edges = [(p.i, p.j) if isinstance(p, DuplicatePair) else (p[0], p[1]) for p in pairs]
    rows = np.array([e[0] for e in edges], np.int64)
    cols = np.array([e[1] for e in edges], np.int64)
    graph = coo_matrix((np.ones(len(edges), np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber in order of first appearance so the labels do not depend on scipy's internals.
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels]
