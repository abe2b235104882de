"""Perceptual hashes of photos (numpy + Pillow): a 64-bit DCT hash, as ``imagehash.phash``.

The photo is turned grey, resized to 32x32, transformed by a 2-D DCT; the 8x8 lowest frequencies
are compared with their median, one bit each. Re-encoding, resizing, mild colour edits and small
overlays move few bits; cropping moves many (the frequencies of another window). References
therefore store a hash of several windows (:data:`REFERENCE_WINDOWS`), so a query cropped to about
one of them still lands near it; ``docs/reuse.md`` has the measured distances per edit type.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

HASH_SIDE = 32
LOW = 8


def _grid() -> tuple[tuple[float, float, float, float], ...]:
    windows = [(0.0, 0.0, 1.0, 1.0), (0.15, 0.15, 0.85, 0.85)]
    for side in (0.92, 0.85, 0.78):
        for fy in (0.0, 0.5, 1.0):
            for fx in (0.0, 0.5, 1.0):
                x0, y0 = (1 - side) * fx, (1 - side) * fy
                windows.append((x0, y0, x0 + side, y0 + side))
    return tuple(windows)


REFERENCE_WINDOWS: tuple[tuple[float, float, float, float], ...] = _grid()
"""Windows ``(x0, y0, x1, y1)`` in fractions of the photo a reference is hashed at (29): the whole
photo, the centre at 70 %, and a 3x3 grid of windows keeping 92, 85 and 78 % of each side. With 10
windows (the whole photo, three centred and four corner crops, two bands) 48 % of cropped copies
of the real sneakers were found; with these 71 % (docs/reuse.md)."""


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    n = np.arange(HASH_SIDE)
    k = n[:, None]
    m = np.cos(np.pi * (2 * n[None, :] + 1) * k / (2 * HASH_SIDE))  # (32, 32) DCT-II basis
    m[0] /= np.sqrt(2.0)
    return (m * np.sqrt(2.0 / HASH_SIDE)).astype(np.float64)


def hash_bits(grey: np.ndarray) -> int:
    """The 64-bit DCT hash of a ``(32, 32)`` grey image, as an unsigned integer."""
    c = _dct_matrix()
    low = (c @ grey @ c.T)[:LOW, :LOW].ravel()  # (64,) lowest frequencies, DC first
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


SOURCE_SIDE = 256
"""Photos are first reduced to a grey image of this longer side (one step), then each window to 32x32."""


def hash_source(pixels: np.ndarray) -> np.ndarray:
    """``(h, w)`` uint8 grey copy of ``(H, W, 3)`` RGB pixels, longer side at most 256: all a
    photo's hashes are computed from it."""
    h, w = pixels.shape[:2]
    ratio = min(1.0, SOURCE_SIDE / max(h, w))
    img = Image.fromarray(np.ascontiguousarray(pixels))
    if ratio < 1.0:
        size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img.convert("L"))


def source_hash(source: np.ndarray, window: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> int:
    """The hash of one window of a :func:`hash_source` image."""
    grey = Image.fromarray(source)
    w, h = grey.size
    x0, y0, x1, y1 = window
    left, top = round(x0 * w), round(y0 * h)
    box = (left, top, max(round(x1 * w), left + 1), max(round(y1 * h), top + 1))
    small = grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BILINEAR, box=box)
    return hash_bits(np.asarray(small, dtype=np.float64))


def source_window_hashes(source: np.ndarray) -> list[int]:
    """Hashes of :data:`REFERENCE_WINDOWS` of a :func:`hash_source` image, the whole photo first."""
    return [source_hash(source, window) for window in REFERENCE_WINDOWS]


def window_hashes(pixels: np.ndarray) -> list[int]:
    """Hashes of :data:`REFERENCE_WINDOWS` of ``(H, W, 3)`` uint8 RGB pixels, the whole photo first."""
    return source_window_hashes(hash_source(pixels))


def phash(pixels: np.ndarray) -> int:
    """The 64-bit perceptual hash of ``(H, W, 3)`` uint8 RGB pixels (the whole-photo window)."""
    return source_hash(hash_source(pixels))


def to_signed(value: int) -> int:
    """A 64-bit hash as SQLite's signed 64-bit integer."""
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: np.ndarray, b: int) -> np.ndarray:
    """Bits that differ between each hash of ``a`` (uint64) and ``b``."""
    return np.bitwise_count(a ^ np.uint64(b)).astype(np.int64)
