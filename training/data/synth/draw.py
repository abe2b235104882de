"""Painting primitives: noise banks, text and motif masks, tiling, masks, blending and metal.

Arrays are float32: masks ``(h, w)`` in 0..1, colour images ``(h, w, 3)`` in 0..1 (the flat
drawing) unless a docstring says otherwise. Masks and tiles are cached: callers never write
into what these functions return.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.data.synth.layout import Rect
from training.data.synth.specs import BRANDS, Colour


@lru_cache(maxsize=8)
def noise_bank(side: int, kind: str) -> np.ndarray:
    """Fixed noise fields cropped at random offsets: ``(side, side, 3)`` sensor or ``(side, side)`` grain."""
    rng = np.random.default_rng([20240917, side, len(kind)])
    if kind == "sensor":
        return rng.standard_normal((side, side, 3), dtype=np.float32)
    grain = rng.standard_normal((side, side), dtype=np.float32)
    sigma = {"fine": 0.7, "pebble": 1.1}[kind]
    grain = cv2.GaussianBlur(grain, (0, 0), sigma)
    return grain / max(float(grain.std()), 1e-6)


def crop(bank: np.ndarray, h: int, w: int, offset: tuple[int, int]) -> np.ndarray:
    """An ``(h, w)`` window of ``bank`` at ``offset`` (wrapped into range), a view."""
    side = bank.shape[0]
    y = offset[0] % (side - h + 1)
    x = offset[1] % (side - w + 1)
    return bank[y : y + h, x : x + w]


def _font(px: int, bitmap: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default_imagefont() if bitmap else ImageFont.load_default(size=px)


def _bitmap_text(text: str, px: int, ss: int) -> Image.Image:
    """Pillow's bitmap font, drawn natively and scaled to the outline font's cap height at ``ss`` x."""
    font = _font(px, True)
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, fill=255, font=font)
    arr = np.asarray(img)
    ys, xs = np.nonzero(arr)
    arr = arr[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    factor = px * 0.72 * ss / arr.shape[0]
    return Image.fromarray(arr).resize(
        (max(1, round(arr.shape[1] * factor)), max(1, round(arr.shape[0] * factor))),
        Image.Resampling.NEAREST,
    )


def _outline_text(text: str, px: int, tracking: float, stroke: int, ss: int) -> Image.Image:
    """The outline font at ``ss`` x, letter by letter so ``tracking`` can be fractional."""
    font = _font(px * ss)
    lengths = [float(font.getlength(ch)) for ch in text]
    width = int(sum(lengths) + max(0.0, tracking) * ss * len(text) + px * ss * 2)
    img = Image.new("L", (width, int(px * ss * 2)), 0)
    draw = ImageDraw.Draw(img)
    x = float(px * ss * 0.5)
    for ch, length in zip(text, lengths, strict=True):
        draw.text((x, px * ss * 0.3), ch, fill=255, font=font, stroke_width=stroke * ss, stroke_fill=255)
        x += length + tracking * ss
    return img


@lru_cache(maxsize=4096)
def text_mask(
    text: str, px: int, tracking: float = 0.0, stroke: int = 0, hscale: float = 1.0, bitmap: bool = False
) -> np.ndarray:
    """Anti-aliased text coverage ``(h, w)`` float32 0..1, tight to the ink.

    Drawn at 3x and reduced, so ``tracking`` (extra pixels between letters) can be fractional.
    The bitmap font (a counterfeit's other font) has one size and ignores ``tracking``.

    Args:
        text: The lettering.
        px: Font size in pixels.
        tracking: Extra pixels between letters.
        stroke: Extra stroke width in pixels (heavier lettering).
        hscale: Horizontal stretch.
        bitmap: Pillow's bitmap font instead of the outline font.

    Returns:
        The coverage, cropped to the ink (``(1, 1)`` zeros if there is none).
    """
    ss = 3
    img = _bitmap_text(text, px, ss) if bitmap else _outline_text(text, px, tracking, stroke, ss)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    out_w = max(1, round(arr.shape[1] / ss * hscale))
    out_h = max(1, round(arr.shape[0] / ss))
    small = cv2.resize(arr, (out_w, out_h), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small > 0.02)
    if len(ys) == 0:
        return np.zeros((1, 1), np.float32)
    return np.ascontiguousarray(small[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def _flower(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    for a in range(4):
        ang = a * math.pi / 2 + math.pi / 4
        ox, oy = cx + 0.5 * r * math.cos(ang), cy + 0.5 * r * math.sin(ang)
        draw.ellipse((ox - 0.45 * r, oy - 0.45 * r, ox + 0.45 * r, oy + 0.45 * r), fill=255)
    draw.ellipse((cx - 0.18 * r, cy - 0.18 * r, cx + 0.18 * r, cy + 0.18 * r), fill=0)


def _diamond(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    draw.polygon([(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], fill=255)
    draw.polygon([(cx, cy - 0.45 * r), (cx + 0.3 * r, cy), (cx, cy + 0.45 * r), (cx - 0.3 * r, cy)], fill=0)


def _star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    pts = []
    for a in range(8):
        rad = r if a % 2 == 0 else 0.36 * r
        ang = a * math.pi / 4 - math.pi / 2
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    draw.polygon(pts, fill=255)


def _ring(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=255, width=max(1, int(0.22 * r)))
    draw.ellipse((cx - 0.2 * r, cy - 0.2 * r, cx + 0.2 * r, cy + 0.2 * r), fill=255)


MOTIFS: dict[str, Callable[[ImageDraw.ImageDraw, float, float, float], None]] = {
    "flower": _flower,
    "diamond": _diamond,
    "star": _star,
    "ring": _ring,
}
"""Each brand's monogram shape, drawn in white at centre ``(cx, cy)`` with radius ``r``."""


@lru_cache(maxsize=64)
def motif_unit(brand_index: int, pitch: int) -> np.ndarray:
    """One repeat ``(2p, 2p)`` of the brand's monogram: initials and a shape on a checkerboard."""
    brand = BRANDS[brand_index]
    ss = 4
    p = pitch * ss
    img = Image.new("L", (2 * p, 2 * p), 0)
    draw = ImageDraw.Draw(img)
    font = _font(int(p * 0.42))
    for cx, cy in ((0.5 * p, 0.5 * p), (1.5 * p, 1.5 * p)):
        draw.text((cx, cy), brand.initials, fill=255, font=font, anchor="mm")
    for cx, cy in ((1.5 * p, 0.5 * p), (0.5 * p, 1.5 * p)):
        MOTIFS[brand.motif](draw, cx, cy, 0.26 * p)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return cv2.resize(arr, (2 * pitch, 2 * pitch), interpolation=cv2.INTER_AREA)


def tiled(unit: np.ndarray, h: int, w: int, ox: int, oy: int) -> np.ndarray:
    """``unit`` repeated over ``(h, w)`` with phase ``(ox, oy)`` pixels (a view of a fresh array)."""
    uh, uw = unit.shape
    reps = (h + oy % uh) // uh + 2, (w + ox % uw) // uw + 2
    big = np.tile(unit, reps)
    return big[oy % uh : oy % uh + h, ox % uw : ox % uw + w]


def paint(rgb: np.ndarray, mask: np.ndarray, colour: Colour | np.ndarray, x: int, y: int) -> None:
    """Blend ``colour`` into ``rgb`` through ``mask`` placed with its top-left at ``(x, y)`` (clipped).

    ``colour`` is one colour or an image of the mask's shape ``(h, w, 3)``.
    """
    h, w = mask.shape
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    m = mask[y0 - y : y1 - y, x0 - x : x1 - x, None]
    col = np.asarray(colour, np.float32)
    if col.ndim == 3:
        col = col[y0 - y : y1 - y, x0 - x : x1 - x]
    region = rgb[y0:y1, x0:x1]
    region *= 1.0 - m
    region += m * col


def cover(alpha: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """``alpha = max(alpha, mask)`` with ``mask``'s top-left at ``(x, y)`` (clipped)."""
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, alpha.shape[1]), min(y + h, alpha.shape[0])
    if x0 < x1 and y0 < y1:
        region = alpha[y0:y1, x0:x1]
        np.maximum(region, mask[y0 - y : y1 - y, x0 - x : x1 - x], out=region)


def rect_mask(h: int, w: int, rect: Rect, radius: float = 0.0) -> np.ndarray:
    """An ``(h, w)`` mask of ``rect`` (pixels), with corners rounded to ``radius`` if positive."""
    mask = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = (round(v) for v in rect)
    if radius <= 0:
        cv2.rectangle(mask, (x0, y0), (x1 - 1, y1 - 1), 255, -1)
    else:
        r = round(radius)
        cv2.rectangle(mask, (x0 + r, y0), (x1 - 1 - r, y1 - 1), 255, -1)
        cv2.rectangle(mask, (x0, y0 + r), (x1 - 1, y1 - 1 - r), 255, -1)
        for cx, cy in (
            (x0 + r, y0 + r),
            (x1 - 1 - r, y0 + r),
            (x0 + r, y1 - 1 - r),
            (x1 - 1 - r, y1 - 1 - r),
        ):
            cv2.circle(mask, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return mask.astype(np.float32) / 255.0


def metal(
    h: int,
    w: int,
    colour: Colour,
    rng: np.random.Generator,
    dull: float = 0.0,
    pits: np.random.Generator | None = None,
) -> np.ndarray:
    """Brushed, specular metal ``(h, w, 3)``; ``dull`` 0..1 flattens, greys and pits it (``pits`` draws where)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / max(w, 1), yy / max(h, 1)
    phase = float(rng.uniform(0, 2 * math.pi))
    shade = 0.62 + 0.38 * np.cos(2 * math.pi * (0.7 * u + 0.35 * v) + phase)
    spec = np.exp(-(((u - rng.uniform(0.25, 0.75)) ** 2) + (v - rng.uniform(0.2, 0.6)) ** 2) / 0.03)
    contrast = 1.0 - 0.75 * dull
    shade = 1.0 + (shade - 1.0) * contrast
    base = np.asarray(colour, np.float32)
    grey = np.full(3, float(base.mean()) * 0.85, np.float32)
    base = base * (1 - 0.55 * dull) + grey * 0.55 * dull
    out = base * shade[..., None] * (1.0 - 0.18 * dull) + (0.9 * (1 - 0.85 * dull) * spec)[..., None]
    if dull > 0:
        pits = pits or rng
        n = int(3 + 50 * dull * dull * (h * w) / 900.0)  # subtle: a few fine pits; obvious: pitted
        for _ in range(n):
            cx, cy = pits.uniform(0, w), pits.uniform(0, h)
            rad = float(pits.uniform(0.4, 0.6 + 1.2 * dull))
            cv2.circle(
                out,
                (round(cx * 4), round(cy * 4)),
                max(1, round(rad * 4)),
                (0.25, 0.22, 0.2),
                -1,
                cv2.LINE_AA,
                2,
            )
    return np.clip(out, 0, 1.2)


def union(a: Rect, b: Rect) -> Rect:
    """The smallest rectangle holding ``a`` and ``b``."""
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def pad(r: Rect, p: float) -> Rect:
    """``r`` grown by ``p`` on every side."""
    return r[0] - p, r[1] - p, r[2] + p, r[3] + p
