"""Synthetic product photos of luxury goods whose only difference between classes is the tells.

Usage: ``authlens data synth --out datasets/synthetic --n 600 --seed 0``

Each physical *item* (a handbag, wallet, card holder or belt of one of four fictitious brands)
is drawn flat once: monogram canvas, a leather trim piece, stitched seams, a logo plate or
embossed stamp, metal hardware and a leather tag with a serial number. A counterfeit item
carries one to three tells from :data:`model.flags.FLAG_NAMES`, each drawn as a local change of
one of those parts with a magnitude set by its *subtlety* (0 = obvious, 1 = hard to see at
224 px). Every photo of an item then gets its own pose (rotation, perspective,
scale), background, shadow, lighting, white balance, exposure, glare, blur, sensor noise and
JPEG quality, drawn from distributions that do not depend on the label.

Determinism: the item plan comes from ``(seed, 0)``, item *i* from ``(seed, 1, i)``, photo *k*
from ``(seed, 2, k)`` and tell details from ``(seed, 3, i, flag)``, so any photo can be rendered
alone (in any process) and the same seed gives the same bytes.
"""

from __future__ import annotations

import colorsys
import io
import itertools
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.flags import FLAG_INDEX, FLAG_NAMES, LABELS
from training.data.manifest import PRODUCT_BOX, Box, Record, write_manifest

CATEGORIES: tuple[str, ...] = ("handbag", "wallet", "cardholder", "belt")
ASPECT: dict[str, float] = {"handbag": 0.85, "wallet": 0.58, "cardholder": 0.66, "belt": 0.30}
"""Height / width of each category's flat drawing."""
FRAMING: dict[str, tuple[float, float]] = {
    "handbag": (0.55, 0.92),
    "wallet": (0.6, 0.95),
    "cardholder": (0.55, 0.9),
    "belt": (0.8, 1.05),
}
"""Range of the product's width as a fraction of the photo (a photo's pose picks a point in it)."""

Colour = tuple[float, float, float]
Rect = tuple[float, float, float, float]


@dataclass(frozen=True)
class Brand:
    """A fictitious house style: what every genuine item of the brand looks like."""

    name: str
    initials: str
    logo: str
    origin: str
    serial_pattern: str  # L = letter (no I/O), D = digit, anything else literal
    canvas: Colour
    print: Colour
    trim: Colour
    thread: Colour
    metal: Colour
    tag: Colour
    motif: str  # flower | diamond | star | ring
    stitch_slant: float  # degrees


def _rgb(hex_colour: str) -> Colour:
    v = int(hex_colour.lstrip("#"), 16)
    return ((v >> 16) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0)


BRANDS: tuple[Brand, ...] = (
    Brand(
        "Maison Aurel", "MA", "MAISON AUREL", "MADE IN FRANCE", "LLDDDD",
        _rgb("#6a4a2e"), _rgb("#c9a46c"), _rgb("#b87745"), _rgb("#e8c77e"), _rgb("#d6ad5c"),
        _rgb("#d9b48a"), "flower", 12.0,
    ),
    Brand(
        "Velloni", "VL", "VELLONI", "MADE IN ITALY", "DDDDLL",
        _rgb("#3c4540"), _rgb("#1d2220"), _rgb("#1f1d1d"), _rgb("#cfcac0"), _rgb("#c8cacf"),
        _rgb("#2d2b2a"), "diamond", 0.0,
    ),
    Brand(
        "Halvard", "HD", "HALVARD", "MADE IN SPAIN", "LLL-DDD",
        _rgb("#b9a182"), _rgb("#7a3a28"), _rgb("#7a2a25"), _rgb("#efe5cc"), _rgb("#c99a74"),
        _rgb("#e8d9bd"), "star", -10.0,
    ),
    Brand(
        "Castine", "CS", "CASTINE PARIS", "MADE IN FRANCE", "DDLLDD",
        _rgb("#2a3050"), _rgb("#aeb0bd"), _rgb("#a07a58"), _rgb("#e9dfca"), _rgb("#d3d4d9"),
        _rgb("#c79d76"), "ring", 6.0,
    ),
)  # fmt: skip

_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # genuine serials never use I or O
_LOOKALIKES = {"0": "O", "1": "I", "8": "B", "5": "S", "2": "Z", "B": "8", "S": "5", "Z": "2", "D": "0"}


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class TellSpec:
    """One tell of a counterfeit item: its flag name and how hard it is to see (0..1)."""

    name: str
    subtlety: float

    @property
    def strength(self) -> float:
        """Magnitude of the change, 0.35 (hard to see at 224 px) .. 1 (obvious).

        The floor keeps the subtlest tell above what genuine items vary by and above the sensor
        noise at the model's 224 px: hard to see, yet there to be learnt (docs/datasets.md).
        """
        return 0.35 + 0.65 * (1.0 - self.subtlety)


@dataclass(frozen=True)
class ItemSpec:
    """Everything about one physical item (shared by all its photos)."""

    seed: int
    index: int
    brand: int
    category: str
    label: str
    canvas: Colour
    print: Colour
    trim: Colour
    jitter: tuple[float, ...]  # layout offsets, fractions of the width
    pattern_offset: tuple[int, int]  # monogram phase, fractions of the pitch x 1000
    serial: str
    grain_offset: tuple[int, int]
    tells: tuple[TellSpec, ...]

    @property
    def item_id(self) -> str:
        return f"item{self.index:05d}"


@dataclass(frozen=True)
class PhotoSpec:
    """Everything about one photo of an item (pose, scene, light, camera)."""

    index: int
    frac: float  # 0..1, where the product's width falls in its category's range (FRAMING)
    angle: float  # degrees
    centre: tuple[float, float]  # fractions of the image
    corner_jitter: tuple[float, ...]  # 8 values, fractions of the image
    background: str
    bg_colours: tuple[Colour, Colour]
    bg_params: tuple[float, ...]
    shadow: tuple[float, float, float, float]  # dx, dy (fractions), blur (fraction), opacity
    light: tuple[float, float, float, float]  # direction (rad), strength, ambient, vignette
    exposure: float
    white_balance: tuple[float, float]  # red and blue gains
    glare: tuple[float, float, float, float]  # x, y (fractions), radius (fraction), strength (0 = none)
    blur_sigma: float
    motion: tuple[float, float]  # length (px at 384), angle (rad); length 0 = none
    noise: tuple[float, float]  # read noise, shot noise (levels at 255)
    jpeg_quality: int
    noise_offset: tuple[int, int]


def _shift_colour(c: Colour, *, hue: float, sat: float, val: float) -> Colour:
    h, s, v = colorsys.rgb_to_hsv(*c)
    r, g, b = colorsys.hsv_to_rgb((h + hue / 360.0) % 1.0, min(1.0, s * sat), min(1.0, v * val))
    return (r, g, b)


def _tell_rng(seed: int, item: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, 3, item, FLAG_INDEX[name]])


def item_spec(seed: int, index: int) -> ItemSpec:
    """Draw item ``index`` of the dataset with ``seed``.

    Args:
        seed: Dataset seed.
        index: Item number (0-based); items ``2k`` and ``2k + 1`` are one genuine, one counterfeit.

    Returns:
        The item's specification; its tells are empty for a genuine item.
    """
    rng = np.random.default_rng([seed, 1, index])
    brand_i = int(rng.integers(len(BRANDS)))
    brand = BRANDS[brand_i]
    category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]

    # Natural variation of genuine material, the same for every item whatever its label.
    def natural(c: Colour) -> Colour:
        return _shift_colour(
            c, hue=rng.normal(0, 1.5), sat=1 + rng.normal(0, 0.04), val=1 + rng.normal(0, 0.04)
        )

    canvas, print_, trim = natural(brand.canvas), natural(brand.print), natural(brand.trim)
    jitter = tuple(float(v) for v in rng.uniform(-0.012, 0.012, size=8))
    pattern_offset = (int(rng.integers(1000)), int(rng.integers(1000)))
    serial = _serial(brand.serial_pattern, rng)
    grain_offset = (int(rng.integers(1 << 16)), int(rng.integers(1 << 16)))
    # Items come in pairs, one of each label in a random order, so the classes stay balanced.
    first = int(np.random.default_rng([seed, 6, index // 2]).integers(2))
    label = LABELS[(index % 2) ^ first]
    tells: tuple[TellSpec, ...] = ()
    if label == "counterfeit":
        k = int(rng.choice([1, 2, 3], p=[0.5, 0.33, 0.17]))
        names = sorted(rng.choice(len(FLAG_NAMES), size=k, replace=False).tolist())
        tells = tuple(TellSpec(FLAG_NAMES[i], round(float(rng.uniform(0.0, 1.0)), 3)) for i in names)
    return ItemSpec(
        seed, index, brand_i, category, label, canvas, print_, trim, jitter, pattern_offset, serial,
        grain_offset, tells,
    )  # fmt: skip


def _serial(pattern: str, rng: np.random.Generator) -> str:
    out = []
    for ch in pattern:
        if ch == "L":
            out.append(_LETTERS[int(rng.integers(len(_LETTERS)))])
        elif ch == "D":
            out.append(str(int(rng.integers(10))))
        else:
            out.append(ch)
    return "".join(out)


BACKGROUNDS: tuple[str, ...] = ("sweep", "wood", "fabric", "marble", "clutter")


def photo_spec(seed: int, index: int) -> PhotoSpec:
    """Draw the pose, scene and camera of photo ``index`` (independent of the item and its label)."""
    rng = np.random.default_rng([seed, 2, index])

    def colour() -> Colour:
        h, s, v = rng.random(), rng.uniform(0.0, 0.45), rng.uniform(0.25, 0.95)
        return colorsys.hsv_to_rgb(h, s, v)

    motion_len = float(rng.uniform(2.0, 7.0)) if rng.random() < 0.15 else 0.0
    glare_strength = float(rng.uniform(0.15, 0.5)) if rng.random() < 0.3 else 0.0
    return PhotoSpec(
        index=index,
        frac=float(rng.random()),
        angle=float(rng.normal(0, 14)),
        centre=(float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.42, 0.58))),
        corner_jitter=tuple(float(v) for v in np.clip(rng.normal(0, 0.035, size=8), -0.08, 0.08)),
        background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        bg_colours=(colour(), colour()),
        bg_params=tuple(float(v) for v in rng.random(8)),
        shadow=(
            float(rng.normal(0, 0.025)),
            float(rng.uniform(0.0, 0.04)),
            float(rng.uniform(0.01, 0.05)),
            float(rng.uniform(0.2, 0.6)),
        ),
        light=(
            float(rng.uniform(0, 2 * math.pi)),
            float(rng.uniform(0.05, 0.45)),
            float(rng.uniform(0.75, 1.0)),
            float(rng.uniform(0.0, 0.35)),
        ),
        exposure=float(2 ** rng.uniform(-0.6, 0.45)),
        white_balance=(float(math.exp(rng.normal(0, 0.07))), float(math.exp(rng.normal(0, 0.07)))),
        glare=(
            float(rng.uniform(0.25, 0.75)),
            float(rng.uniform(0.25, 0.75)),
            float(rng.uniform(0.05, 0.2)),
            glare_strength,
        ),
        blur_sigma=float(
            rng.choice([0.0, rng.uniform(0.3, 0.8), rng.uniform(0.8, 1.5)], p=[0.3, 0.45, 0.25])
        ),
        motion=(motion_len, float(rng.uniform(0, math.pi))),
        noise=(float(rng.uniform(0.5, 4.0)), float(rng.uniform(0.0, 0.9))),
        jpeg_quality=int(rng.integers(60, 96)),
        noise_offset=(int(rng.integers(1 << 16)), int(rng.integers(1 << 16))),
    )


# --------------------------------------------------------------------------- drawing helpers


@lru_cache(maxsize=8)
def _noise_bank(side: int, kind: str) -> np.ndarray:
    """Fixed noise fields cropped at random offsets: ``(side, side, 3)`` sensor or ``(side, side)`` grain."""
    rng = np.random.default_rng([20240917, side, len(kind)])
    if kind == "sensor":
        return rng.standard_normal((side, side, 3), dtype=np.float32)
    grain = rng.standard_normal((side, side), dtype=np.float32)
    sigma = {"fine": 0.7, "pebble": 1.1}[kind]
    grain = cv2.GaussianBlur(grain, (0, 0), sigma)
    return grain / max(float(grain.std()), 1e-6)


def _crop(bank: np.ndarray, h: int, w: int, offset: tuple[int, int]) -> np.ndarray:
    side = bank.shape[0]
    y = offset[0] % (side - h + 1)
    x = offset[1] % (side - w + 1)
    return bank[y : y + h, x : x + w]


def _font(px: int, bitmap: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default_imagefont() if bitmap else ImageFont.load_default(size=px)


@lru_cache(maxsize=4096)
def _text_mask(
    text: str, px: int, tracking: float = 0.0, stroke: int = 0, hscale: float = 1.0, bitmap: bool = False
) -> np.ndarray:
    """Anti-aliased text coverage ``(h, w)`` float32 0..1, tight to the ink.

    Drawn at 3x and reduced, so ``tracking`` (extra pixels between letters) can be fractional.
    """
    ss = 3
    if bitmap:
        # Pillow's bitmap font has one size: draw it natively (tracking is ignored, the other
        # font is the tell) and scale its ink to the cap height the outline font would have.
        font = _font(px, bitmap)
        left, top, right, bottom = (int(v) for v in font.getbbox(text))
        img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
        ImageDraw.Draw(img).text((2 - left, 2 - top), text, fill=255, font=font)
        arr = np.asarray(img)
        ys, xs = np.nonzero(arr)
        arr = arr[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        factor = px * 0.72 * ss / arr.shape[0]
        img = Image.fromarray(arr).resize(
            (max(1, round(arr.shape[1] * factor)), max(1, round(arr.shape[0] * factor))),
            Image.Resampling.NEAREST,
        )
    else:
        font = _font(px * ss)
        lengths = [float(font.getlength(ch)) for ch in text]
        width = int(sum(lengths) + max(0.0, tracking) * ss * len(text) + px * ss * 2)
        img = Image.new("L", (width, int(px * ss * 2)), 0)
        draw = ImageDraw.Draw(img)
        x = float(px * ss * 0.5)
        for ch, length in zip(text, lengths, strict=True):
            draw.text((x, px * ss * 0.3), ch, fill=255, font=font, stroke_width=stroke * ss, stroke_fill=255)
            x += length + tracking * ss
    arr = np.asarray(img, dtype=np.float32) / 255.0
    out_w = max(1, round(arr.shape[1] / ss * hscale))
    out_h = max(1, round(arr.shape[0] / ss))
    small = cv2.resize(arr, (out_w, out_h), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small > 0.02)
    if len(ys) == 0:
        return np.zeros((1, 1), np.float32)
    return np.ascontiguousarray(small[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


@lru_cache(maxsize=64)
def _motif_unit(brand_index: int, pitch: int) -> np.ndarray:
    """One repeat ``(2p, 2p)`` of the brand's monogram: initials and a shape on a checkerboard."""
    brand = BRANDS[brand_index]
    ss = 4
    p = pitch * ss
    img = Image.new("L", (2 * p, 2 * p), 0)
    draw = ImageDraw.Draw(img)
    font = _font(int(p * 0.42))
    for cx, cy in ((0.5 * p, 0.5 * p), (1.5 * p, 1.5 * p)):
        draw.text((cx, cy), brand.initials, fill=255, font=font, anchor="mm")
    r = 0.26 * p
    for cx, cy in ((1.5 * p, 0.5 * p), (0.5 * p, 1.5 * p)):
        if brand.motif == "flower":
            for a in range(4):
                ang = a * math.pi / 2 + math.pi / 4
                ox, oy = cx + 0.5 * r * math.cos(ang), cy + 0.5 * r * math.sin(ang)
                draw.ellipse((ox - 0.45 * r, oy - 0.45 * r, ox + 0.45 * r, oy + 0.45 * r), fill=255)
            draw.ellipse((cx - 0.18 * r, cy - 0.18 * r, cx + 0.18 * r, cy + 0.18 * r), fill=0)
        elif brand.motif == "diamond":
            draw.polygon([(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], fill=255)
            draw.polygon(
                [(cx, cy - 0.45 * r), (cx + 0.3 * r, cy), (cx, cy + 0.45 * r), (cx - 0.3 * r, cy)], fill=0
            )
        elif brand.motif == "star":
            pts = []
            for a in range(8):
                rad = r if a % 2 == 0 else 0.36 * r
                ang = a * math.pi / 4 - math.pi / 2
                pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
            draw.polygon(pts, fill=255)
        else:  # ring
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=255, width=max(1, int(0.22 * r)))
            draw.ellipse((cx - 0.2 * r, cy - 0.2 * r, cx + 0.2 * r, cy + 0.2 * r), fill=255)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return cv2.resize(arr, (2 * pitch, 2 * pitch), interpolation=cv2.INTER_AREA)


def _tiled(unit: np.ndarray, h: int, w: int, ox: int, oy: int) -> np.ndarray:
    uh, uw = unit.shape
    reps = (h + oy % uh) // uh + 2, (w + ox % uw) // uw + 2
    big = np.tile(unit, reps)
    return big[oy % uh : oy % uh + h, ox % uw : ox % uw + w]


def _paint(rgb: np.ndarray, mask: np.ndarray, colour: Colour | np.ndarray, x: int, y: int) -> None:
    """Blend ``colour`` into ``rgb`` through ``mask`` placed with its top-left at ``(x, y)`` (clipped)."""
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


def _cover(alpha: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """``alpha = max(alpha, mask)`` with ``mask``'s top-left at ``(x, y)`` (clipped)."""
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, alpha.shape[1]), min(y + h, alpha.shape[0])
    if x0 < x1 and y0 < y1:
        region = alpha[y0:y1, x0:x1]
        np.maximum(region, mask[y0 - y : y1 - y, x0 - x : x1 - x], out=region)


def _rect_mask(h: int, w: int, rect: Rect, radius: float = 0.0) -> np.ndarray:
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


def _metal(
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


# --------------------------------------------------------------------------- the flat item


@dataclass
class FlatItem:
    """An item drawn flat: RGBA pixels, the product outline and each tell's region (flat pixels)."""

    rgba: np.ndarray  # (H, W, 4) uint8
    product: Rect
    tells: dict[str, Rect] = field(default_factory=dict)


@dataclass
class _Layout:
    body: np.ndarray  # (N, 2) polygon
    body_radius: float
    handle: tuple[float, float, float, float, float] | None  # cx, cy, ax, ay, thickness
    trim: Rect
    panel: Rect
    seams: list[list[tuple[float, float]]]
    logo: tuple[float, float, float, str, bool]  # cx, cy, text px, kind (plate|stamp), initials only
    hardware: list[tuple[str, float, float, float, float]]  # kind, cx, cy, w, h
    tag: Rect


def _layout(spec: ItemSpec, w: int, h: int) -> _Layout:
    j = spec.jitter

    def pt(fx: float, fy: float) -> tuple[float, float]:
        return fx * w, fy * h

    def rect(x0: float, y0: float, x1: float, y1: float, dx: float = 0.0, dy: float = 0.0) -> Rect:
        return (x0 + dx) * w, (y0 + dy) * h, (x1 + dx) * w, (y1 + dy) * h

    def box_seam(r: Rect, inset: float) -> list[tuple[float, float]]:
        x0, y0, x1, y1 = r[0] + inset, r[1] + inset, r[2] - inset, r[3] - inset
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]

    inset = 0.016 * w
    if spec.category == "handbag":
        body = [(0.14, 0.24), (0.86, 0.24), (0.97, 0.90), (0.955, 0.955), (0.91, 0.985), (0.09, 0.985),
                (0.045, 0.955), (0.03, 0.90)]  # fmt: skip
        panel = rect(0.27, 0.56, 0.73, 0.88, j[0], j[1])
        trim = rect(0.11, 0.24, 0.89, 0.335)
        return _Layout(
            body=np.array([pt(*p) for p in body], np.float32),
            body_radius=0.0,
            handle=(0.5 * w, 0.245 * h, 0.22 * w, 0.21 * h, 0.034 * w),
            trim=trim,
            panel=panel,
            seams=[[pt(0.16, 0.318), pt(0.84, 0.318)], box_seam(panel, inset)],
            logo=((0.5 + j[2]) * w, (0.445 + j[3]) * h, 0.046 * w, "plate", False),
            hardware=[
                ("ring", 0.28 * w, 0.245 * h, 0.062 * w, 0.062 * w),
                ("ring", 0.72 * w, 0.245 * h, 0.062 * w, 0.062 * w),
            ],
            tag=rect(0.09, 0.60, 0.245, 0.745, j[4] * 0.5, j[5]),
        )
    if spec.category == "wallet":
        panel = rect(0.06, 0.30, 0.46, 0.86, j[0], j[1])
        return _Layout(
            body=np.array([pt(0.02, 0.04), pt(0.98, 0.04), pt(0.98, 0.96), pt(0.02, 0.96)], np.float32),
            body_radius=0.04 * w,
            handle=None,
            trim=rect(0.02, 0.04, 0.98, 0.205),
            panel=panel,
            seams=[
                [pt(0.04, 0.19), pt(0.96, 0.19)],
                [pt(0.04, 0.925), pt(0.96, 0.925)],
                box_seam(panel, inset),
            ],
            logo=((0.5 + j[2]) * w, 0.12 * h, 0.05 * w, "stamp", False),
            hardware=[("snap", (0.76 + j[3]) * w, (0.5 + j[6]) * h, 0.085 * w, 0.085 * w)],
            tag=rect(0.56, 0.68, 0.92, 0.87, j[4], j[5] * 0.5),
        )
    if spec.category == "cardholder":
        panel = rect(0.08, 0.10, 0.92, 0.42, j[0], j[1] * 0.5)
        return _Layout(
            body=np.array([pt(0.03, 0.03), pt(0.97, 0.03), pt(0.97, 0.97), pt(0.03, 0.97)], np.float32),
            body_radius=0.035 * w,
            handle=None,
            trim=rect(0.03, 0.79, 0.97, 0.97),
            panel=panel,
            seams=[[pt(0.05, 0.81), pt(0.95, 0.81)], box_seam(panel, inset)],
            logo=((0.5 + j[2]) * w, 0.89 * h, 0.048 * w, "stamp", False),
            hardware=[("ring", (0.84 + j[3]) * w, (0.6 + j[6]) * h, 0.075 * w, 0.075 * w)],
            tag=rect(0.10, 0.50, 0.50, 0.72, j[4], j[5] * 0.5),
        )
    # belt
    body = [(0.16, 0.2), (0.93, 0.2), (0.985, 0.5), (0.93, 0.8), (0.16, 0.8)]
    panel = rect(0.33, 0.28, 0.55, 0.72, j[0] * 0.5)
    return _Layout(
        body=np.array([pt(*p) for p in body], np.float32),
        body_radius=0.0,
        handle=None,
        trim=rect(0.22, 0.1, 0.29, 0.9),
        panel=panel,
        seams=[[pt(0.30, 0.25), pt(0.92, 0.25)], [pt(0.30, 0.75), pt(0.92, 0.75)]],
        logo=((0.645 + j[2] * 0.5) * w, 0.5 * h, 0.05 * w, "plate", True),
        hardware=[("buckle", 0.105 * w, 0.5 * h, 0.17 * w, 0.92 * h)],
        tag=rect(0.745, 0.32, 0.885, 0.68, j[4] * 0.5),
    )


def _union(a: Rect, b: Rect) -> Rect:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _pad(r: Rect, p: float) -> Rect:
    return r[0] - p, r[1] - p, r[2] + p, r[3] + p


def _stitches(seam: list[tuple[float, float]], pitch: float) -> list[tuple[float, float, float]]:
    """Stitch centres and directions ``(x, y, angle)`` at ``pitch`` along a polyline."""
    out = []
    for (x0, y0), (x1, y1) in itertools.pairwise(seam):
        length = math.hypot(x1 - x0, y1 - y0)
        n = max(1, int(length // pitch))
        ang = math.atan2(y1 - y0, x1 - x0)
        for i in range(n):
            t = (i + 0.5) / n
            out.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, ang))
    return out


def render_flat(spec: ItemSpec, width: int, active: frozenset[str] | None = None) -> FlatItem:
    """Draw an item flat at ``width`` pixels.

    Args:
        spec: The item.
        width: Flat width in pixels (the photo size, so the item is never magnified much).
        active: Tells to draw; ``None`` draws all of ``spec.tells`` (an empty set draws none,
            which is how tests see the same item without its tells).

    Returns:
        RGBA pixels, the product rectangle and each drawn tell's region.
    """
    brand = BRANDS[spec.brand]
    tells = {t.name: t for t in spec.tells if active is None or t.name in active}
    w = width
    h = round(ASPECT[spec.category] * w)
    lay = _layout(spec, w, h)
    regions: dict[str, Rect] = {}

    # Silhouette: body polygon (or rounded rectangle), handle, hardware that sticks out.
    alpha8 = np.zeros((h, w), np.uint8)
    if lay.body_radius > 0:
        xs, ys = lay.body[:, 0], lay.body[:, 1]
        body_mask = _rect_mask(h, w, (xs.min(), ys.min(), xs.max(), ys.max()), lay.body_radius)
    else:
        cv2.fillPoly(alpha8, [np.round(lay.body * 4).astype(np.int32)], 255, cv2.LINE_AA, 2)
        body_mask = alpha8.astype(np.float32) / 255.0
    alpha = body_mask.copy()

    # Canvas and its monogram print; the panel repeats the body's pattern in phase.
    pitch = max(8, round(0.06 * w))
    unit = _motif_unit(spec.brand, pitch)
    ox = spec.pattern_offset[0] * 2 * pitch // 1000
    oy = spec.pattern_offset[1] * 2 * pitch // 1000
    print_mask = _tiled(unit, h, w, ox, oy).copy()
    px0, py0, px1, py1 = (round(v) for v in lay.panel)
    if "monogram_alignment" in tells:
        t = tells["monogram_alignment"]
        trng = _tell_rng(spec.seed, spec.index, t.name)
        shift = max(1.0, (0.12 + 0.43 * t.strength) * pitch)
        ang = trng.uniform(0, 2 * math.pi)
        dx, dy = round(shift * math.cos(ang)), round(shift * math.sin(ang))
        if dx == 0 and dy == 0:
            dx = 1
        # a fake's pocket is cut from canvas printed at another scale as well as out of phase
        scale = 1.0 + float(trng.choice([-1, 1])) * (0.04 + 0.08 * t.strength)
        fake_unit = _motif_unit(
            spec.brand,
            max(pitch + 1, round(pitch * scale)) if scale > 1 else min(pitch - 1, round(pitch * scale)),
        )
        print_mask[py0:py1, px0:px1] = _tiled(fake_unit, py1 - py0, px1 - px0, ox + px0 + dx, oy + py0 + dy)
        regions[t.name] = _pad(lay.panel, 2)
    if "print_quality" in tells:
        t = tells["print_quality"]
        trng = _tell_rng(spec.seed, spec.index, t.name)
        bx0, by0 = float(lay.body[:, 0].min()), float(lay.body[:, 1].min())
        bx1, by1 = float(lay.body[:, 0].max()), float(lay.body[:, 1].max())
        rw = trng.uniform(0.2, 0.34) * w
        rh = min(trng.uniform(0.2, 0.34) * w, 0.8 * (by1 - by0))
        rx = trng.uniform(bx0 + 0.05 * w, max(bx0 + 0.05 * w + 1, bx1 - rw - 0.05 * w))
        ry = trng.uniform(by0 + 0.05 * h, max(by0 + 0.05 * h + 1, by1 - rh - 0.05 * h))
        x0, y0, x1, y1 = round(rx), round(ry), round(rx + rw), round(ry + rh)
        s = t.strength
        region = print_mask[y0:y1, x0:x1]
        blurred = cv2.GaussianBlur(region, (0, 0), 0.8 + 2.4 * s)
        bled = np.minimum(1.0, blurred * (1.0 + 0.8 * s))
        print_mask[y0:y1, x0:x1] = bled * (1.0 - 0.4 * s)
        regions[t.name] = _pad((x0, y0, x1, y1), 2)
    grain_fine = _crop(_noise_bank(1024, "fine"), h, w, spec.grain_offset)
    grain_pebble = _crop(_noise_bank(1024, "pebble"), h, w, spec.grain_offset[::-1])
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = np.asarray(spec.canvas, np.float32)
    rgb *= (1.0 + 0.05 * grain_fine)[..., None]
    pm = (0.92 * print_mask)[..., None]
    rgb *= 1.0 - pm
    rgb += pm * np.asarray(spec.print, np.float32) * (1.0 + 0.04 * grain_fine)[..., None]
    # Panel edge: a thin shadow line where the pocket's leather edge turns.
    cv2.rectangle(rgb, (px0, py0), (px1 - 1, py1 - 1), tuple(0.55 * c for c in spec.canvas), 1, cv2.LINE_AA)

    # Leather trim piece (colour_shift changes its shade relative to the rest of the item).
    trim_colour = spec.trim
    if "color_shift" in tells:
        t = tells["color_shift"]
        trng = _tell_rng(spec.seed, spec.index, t.name)
        s = t.strength
        # An additive shift along a random chroma direction (visible on black leather too) plus
        # a change of lightness; genuine trim only varies by the small natural jitter.
        phi = float(trng.uniform(0, 2 * math.pi))
        chroma = np.cos(phi - np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3])) * (0.04 + 0.12 * s)
        light = float(trng.choice([-1, 1])) * 0.07 * s
        trim_colour = tuple(float(v) for v in np.clip(np.asarray(spec.trim) + chroma + light, 0.02, 0.98))
    tx0, ty0, tx1, ty1 = (round(v) for v in lay.trim)
    trim_mask = _rect_mask(h, w, lay.trim)
    if spec.category == "belt":  # the keeper loop wraps around the strap
        alpha = np.maximum(alpha, trim_mask)
    else:
        trim_mask *= body_mask
    leather = np.asarray(trim_colour, np.float32) * (1.0 + 0.035 * grain_pebble)[..., None]
    _paint(rgb, trim_mask, leather, 0, 0)
    if "color_shift" in tells:
        regions["color_shift"] = _pad((tx0, ty0, tx1, ty1), 2)

    # Handle (handbag), drawn in the genuine trim colour.
    if lay.handle is not None:
        cx, cy, ax, ay, thick = lay.handle
        hm = np.zeros((h, w), np.uint8)
        cv2.ellipse(hm, (round(cx * 4), round(cy * 4)), (round(ax * 4), round(ay * 4)), 0, 180, 360, 255,
                    round(thick), cv2.LINE_AA, 2)  # fmt: skip
        hmf = hm.astype(np.float32) / 255.0
        hmf[round(cy) :, :] = 0
        handle_col = np.asarray(spec.trim, np.float32) * (1.0 + 0.035 * grain_pebble)[..., None] * 0.92
        _paint(rgb, hmf, handle_col, 0, 0)
        alpha = np.maximum(alpha, hmf)

    # Stitched seams (stitch_irregular perturbs one run of stitches).
    spitch = 0.026 * w
    thread = np.asarray(brand.thread, np.float32)
    thick = max(1, round(0.0045 * w))
    groove = tuple(float(c) * 0.6 for c in spec.canvas)
    stitches: list[tuple[float, float, float]] = []
    seam_of: list[int] = []  # which seam each stitch is on
    seam_of_start: list[int] = []  # index of each seam's first stitch
    for seam in lay.seams:
        for (x0, y0), (x1, y1) in itertools.pairwise(seam):
            cv2.line(
                rgb, (round(x0 * 4), round(y0 * 4)), (round(x1 * 4), round(y1 * 4)), groove, 1, cv2.LINE_AA, 2
            )
        seam_stitches = _stitches(seam, spitch)
        seam_of += [len(seam_of_start)] * len(seam_stitches)
        seam_of_start.append(len(stitches))
        stitches += seam_stitches
    length = np.full(len(stitches), 0.58 * spitch)
    slant = np.full(len(stitches), math.radians(brand.stitch_slant))
    offsets = np.zeros((len(stitches), 2))
    if "stitch_irregular" in tells:
        t = tells["stitch_irregular"]
        trng = _tell_rng(spec.seed, spec.index, t.name)
        s = t.strength
        run = int(trng.integers(7, 13))
        # the run stays on one seam (a run across two seams would box half the item)
        seam_i = int(trng.integers(len(seam_of_start)))
        first = seam_of_start[seam_i]
        count = seam_of.count(seam_i)
        run = min(run, count)
        start = first + int(trng.integers(0, max(1, count - run + 1)))
        sel = slice(start, start + run)
        along = trng.normal(0, 0.45 * spitch * s, run)
        across = trng.normal(0, 0.25 * spitch * s, run)
        length[sel] *= np.clip(1 + trng.normal(0, 0.5 * s, run), 0.35, 1.7)
        slant[sel] += trng.normal(0, math.radians(35) * s, run)
        angs = np.array([a for _, _, a in stitches[sel]])
        offsets[sel, 0] = along * np.cos(angs) - across * np.sin(angs)
        offsets[sel, 1] = along * np.sin(angs) + across * np.cos(angs)
        xs = np.array([x for x, _, _ in stitches[sel]])
        ys = np.array([y for _, y, _ in stitches[sel]])
        regions[t.name] = _pad(
            (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())),
            0.75 * spitch + 2 * thick + 2,
        )
    for i, (x, y, a) in enumerate(stitches):
        d = a + slant[i]
        hx, hy = 0.5 * length[i] * math.cos(d), 0.5 * length[i] * math.sin(d)
        cx, cy = x + offsets[i, 0], y + offsets[i, 1]
        p0 = (round((cx - hx) * 4), round((cy - hy) * 4))
        p1 = (round((cx + hx) * 4), round((cy + hy) * 4))
        cv2.line(rgb, p0, p1, tuple(float(c) for c in thread), thick, cv2.LINE_AA, 2)

    # Logo: engraved metal plate or embossed stamp (logo_font changes the lettering).
    lcx, lcy, lpx, kind, initials_only = lay.logo
    text = brand.initials if initials_only else brand.logo
    px = max(6, round(lpx))
    genuine_mask = _text_mask(text, px, 0.06 * px)
    mask = genuine_mask
    if "logo_font" in tells:
        t = tells["logo_font"]
        trng = _tell_rng(spec.seed, spec.index, t.name)
        s = t.strength
        tracking = 0.06 * px + float(trng.choice([-1, 1])) * (0.15 + 0.4 * s) * px * 0.5
        hscale = 1.0 + float(trng.choice([-1, 1])) * (0.07 + 0.15 * s)
        stroke = 1 if s > 0.5 else 0  # heavier lettering, the commonest give-away
        bitmap = bool(s > 0.85 and trng.random() < 0.5)
        mask = _text_mask(text, px, round(tracking, 2), stroke, round(hscale, 3), bitmap)
        limit = round(1.25 * genuine_mask.shape[1])
        if mask.shape[1] > limit:  # a fake plate still holds its lettering
            mask = cv2.resize(mask, (limit, mask.shape[0]), interpolation=cv2.INTER_AREA)
    gh, gw = genuine_mask.shape
    plate: Rect = (
        lcx - gw / 2 - 0.5 * px,
        lcy - gh / 2 - 0.45 * px,
        lcx + gw / 2 + 0.5 * px,
        lcy + gh / 2 + 0.45 * px,
    )
    mh, mw = mask.shape
    mx, my = round(lcx - mw / 2), round(lcy - mh / 2)
    if kind == "plate":
        pr = tuple(round(v) for v in plate)
        pw, ph = pr[2] - pr[0], pr[3] - pr[1]
        metal = _metal(ph, pw, brand.metal, np.random.default_rng([spec.seed, 4, spec.index]))
        pmask = _rect_mask(ph, pw, (0, 0, pw, ph), 0.18 * ph)
        _paint(rgb, pmask, metal, pr[0], pr[1])
        _cover(alpha, pmask, pr[0], pr[1])
        _paint(rgb, mask * 0.9, tuple(0.95 * c for c in brand.metal), mx, my + 1)
        _paint(rgb, mask * 0.85, tuple(0.32 * c for c in brand.metal), mx, my)
    else:
        base = rgb[max(my, 0) : my + mh, max(mx, 0) : mx + mw].copy()
        shadow = np.zeros((mh, mw, 3), np.float32)
        shadow[: base.shape[0], : base.shape[1]] = base * 0.55
        _paint(rgb, mask * 0.9, shadow * 0.8, mx, my)
        # additive lift as well as gain, so a stamp on black leather still catches the light
        highlight = np.clip(shadow / 0.55 * 1.3 + 0.14, 0, 1)
        _paint(rgb, mask * 0.55, highlight, mx + 1, my + 1)
    if "logo_font" in tells:
        text_box = (mx, my, mx + mw, my + mh)
        gbox = (lcx - gw / 2, lcy - gh / 2, lcx + gw / 2, lcy + gh / 2)
        regions["logo_font"] = _pad(_union(text_box, gbox), 3)

    # Metal hardware (hardware_finish dulls and pits one piece).
    dull_piece = -1
    if "hardware_finish" in tells:
        trng = _tell_rng(spec.seed, spec.index, "hardware_finish")
        dull_piece = int(trng.integers(len(lay.hardware)))
    for k, (hkind, hcx, hcy, hw_, hh_) in enumerate(lay.hardware):
        x0, y0 = round(hcx - hw_ / 2), round(hcy - hh_ / 2)
        pw, ph = round(hw_), round(hh_)
        m = np.zeros((ph * 4, pw * 4), np.uint8)
        if hkind == "ring":
            cv2.circle(m, (pw * 2, ph * 2), round(pw * 1.6), 255, max(1, round(pw * 0.7)), cv2.LINE_AA)
        elif hkind == "snap":
            cv2.circle(m, (pw * 2, ph * 2), round(pw * 1.9), 255, -1, cv2.LINE_AA)
        else:  # buckle frame and prong
            cv2.rectangle(m, (0, 0), (pw * 4 - 1, ph * 4 - 1), 255, -1)
            cv2.rectangle(m, (round(pw * 0.9), round(ph * 0.7)), (round(pw * 3.1), round(ph * 3.3)), 0, -1)
            cv2.rectangle(m, (round(pw * 1.4), round(ph * 1.85)), (pw * 4 - 1, round(ph * 2.15)), 255, -1)
        pmask = cv2.resize(m, (pw, ph), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        dull, pits = 0.0, None
        if k == dull_piece:  # same brushing and highlight as the genuine piece, then dulled and pitted
            t = tells["hardware_finish"]
            dull, pits = t.strength, _tell_rng(spec.seed, spec.index, t.name)
            regions[t.name] = _pad((x0, y0, x0 + pw, y0 + ph), 2)
        metal = _metal(ph, pw, brand.metal, np.random.default_rng([spec.seed, 5, spec.index, k]), dull, pits)
        if hkind == "snap":  # a groove ring on the cap
            ring = np.zeros((ph * 4, pw * 4), np.uint8)
            cv2.circle(ring, (pw * 2, ph * 2), round(pw * 1.2), 255, max(1, round(pw * 0.18)), cv2.LINE_AA)
            metal *= (
                1.0 - 0.35 * (cv2.resize(ring, (pw, ph), interpolation=cv2.INTER_AREA) / 255.0)[..., None]
            )
        _paint(rgb, pmask, metal, x0, y0)
        _cover(alpha, pmask, x0, y0)

    # Serial tag (serial_format: wrong pattern or font; subtle ones need full resolution).
    tag_col = np.asarray(brand.tag, np.float32) * (1.0 + 0.05 * grain_pebble)[..., None]
    tg = tuple(round(v) for v in lay.tag)
    tag_mask = _rect_mask(h, w, lay.tag, 0.08 * (tg[3] - tg[1]))
    _paint(rgb, tag_mask, tag_col, 0, 0)
    cv2.rectangle(
        rgb,
        (tg[0] + 2, tg[1] + 2),
        (tg[2] - 3, tg[3] - 3),
        tuple(0.7 * float(c) for c in brand.tag),
        1,
        cv2.LINE_AA,
    )
    ink = tuple(
        0.25 * float(c) if float(np.mean(brand.tag)) > 0.4 else min(1.0, 2.6 * float(c)) for c in brand.tag
    )
    tag_h = tg[3] - tg[1]
    origin_px = max(6, round(0.2 * tag_h))
    serial_px = max(7, round(0.3 * tag_h))
    origin = _text_mask(brand.origin, origin_px)
    while origin.shape[1] > 0.88 * (tg[2] - tg[0]) and origin_px > 5:
        origin_px -= 1
        origin = _text_mask(brand.origin, origin_px)
    tcx = (tg[0] + tg[2]) / 2
    _paint(rgb, origin * 0.9, ink, round(tcx - origin.shape[1] / 2), round(tg[1] + 0.2 * tag_h))
    serial_text, s_track, s_hscale, s_bitmap, s_dy = spec.serial, 0.08 * serial_px, 1.0, False, 0
    if "serial_format" in tells:
        t = tells["serial_format"]
        trng = _tell_rng(spec.seed, spec.index, t.name)
        serial_text, s_track, s_hscale, s_bitmap, s_dy = _fake_serial(
            spec.serial, t.strength, serial_px, trng
        )
    sg = _text_mask(spec.serial, serial_px, 0.08 * serial_px)
    sm = _text_mask(serial_text, serial_px, round(s_track, 2), 0, round(s_hscale, 3), s_bitmap)
    sy = round(tg[1] + 0.52 * tag_h) + s_dy
    sx = round(tcx - sm.shape[1] / 2)
    _paint(rgb, sm * 0.95, ink, sx, sy)
    if "serial_format" in tells:
        gsx = round(tcx - sg.shape[1] / 2)
        gsy = round(tg[1] + 0.52 * tag_h)
        regions["serial_format"] = _pad(
            _union(
                (sx, sy, sx + sm.shape[1], sy + sm.shape[0]), (gsx, gsy, gsx + sg.shape[1], gsy + sg.shape[0])
            ),
            2,
        )

    # Soft edge shading (puffed leather), then RGBA.
    small = cv2.resize(alpha, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(1.0, 0.012 * w))
    shade = 0.8 + 0.2 * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    rgb *= shade[..., None]
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., :3] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgba[..., 3] = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(rgba[..., 3] > 8)
    product = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return FlatItem(rgba=rgba, product=product, tells=regions)


def _fake_serial(
    serial: str, strength: float, px: int, rng: np.random.Generator
) -> tuple[str, float, float, bool, int]:
    """A counterfeit serial: ``(text, tracking, hscale, bitmap font, baseline shift)``.

    Obvious fakes break the format (wrong length, letters where digits belong, another font);
    subtle ones keep the format but space or stretch the characters by a pixel or two (and half
    of them also swap a character for a look-alike, which only full resolution shows).
    """
    text, tracking, hscale, bitmap, dy = serial, 0.08 * px, 1.0, False, 0
    if strength > 0.6:
        choice = int(rng.integers(3))
        if choice == 0:
            text = serial + str(int(rng.integers(10)))
        elif choice == 1:
            chars = list(serial)
            i = int(rng.integers(len(chars)))
            chars[i] = chars[i].lower() if chars[i].isalpha() else _LETTERS[int(rng.integers(len(_LETTERS)))]
            text = "".join(chars)
        else:
            bitmap = True
        tracking += float(rng.uniform(0.1, 0.3)) * px
    else:
        # spacing and width off (what survives at 224 px), sometimes with a look-alike character
        # on top (only legible at full resolution)
        tracking += float(rng.choice([-1, 1])) * (1.0 + 1.5 * strength)
        hscale = 1.0 + float(rng.choice([-1, 1])) * (0.1 + 0.15 * strength)
        swappable = [i for i, ch in enumerate(serial) if ch in _LOOKALIKES]
        if swappable and rng.random() < 0.5:
            i = swappable[int(rng.integers(len(swappable)))]
            text = serial[:i] + _LOOKALIKES[serial[i]] + serial[i + 1 :]
        if rng.random() < 0.3:
            dy = 1
    return text, tracking, hscale, bitmap, dy


# --------------------------------------------------------------------------- the photo


def _background(p: PhotoSpec, size: int) -> np.ndarray:
    """The scene behind the product, ``(size, size, 3)`` float32 0..255.

    Drawn at half resolution (it is out of focus or smooth) and upsampled; the fabric weave is
    added at full resolution as a separable product.
    """
    full = size
    size = max(16, size // 2)
    a, b = (np.asarray(c, np.float32) for c in p.bg_colours)
    q = p.bg_params
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng([p.index, 7])
    low = cv2.resize(rng.random((6, 6), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    if p.background == "sweep":
        t = np.clip(yy * (0.6 + q[0]) + 0.2 * low - 0.1, 0, 1)[..., None]
        bg = a * (1 - t) + (0.6 * a + 0.4 * b) * t
    elif p.background == "wood":
        ang = q[0] * math.pi
        u = xx * math.cos(ang) + yy * math.sin(ang)
        rings = 0.5 + 0.5 * np.sin(2 * math.pi * (6 + 10 * q[1]) * u + 5 * low)
        base = a * 0.5 + np.asarray((0.45, 0.3, 0.18), np.float32) * 0.5
        bg = base * (0.75 + 0.25 * rings)[..., None]
    elif p.background == "fabric":
        bg = a * (0.88 + 0.1 * low)[..., None]
    elif p.background == "marble":
        fine = cv2.resize(rng.random((24, 24), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        veins = np.abs(np.sin(2 * math.pi * (1.5 * xx + (0.5 + q[1]) * yy + 1.5 * low + 0.4 * fine)))
        veins = np.clip(veins * 6.0, 0, 1)  # thin dark veins where the sine crosses zero
        stone = (0.82 + 0.12 * a) * (0.93 + 0.07 * fine)[..., None]
        bg = stone * (0.78 + 0.22 * veins)[..., None]
    else:  # clutter: out-of-focus objects on a table
        bg = np.empty((size, size, 3), np.float32)
        bg[:] = a * (0.85 + 0.15 * low)[..., None]
        for k in range(3 + int(q[2] * 4)):
            col = tuple(float(v) for v in rng.random(3) * 0.9)
            cx, cy = int(rng.integers(size)), int(rng.integers(size))
            rw, rh = int(rng.integers(size // 10, size // 3)), int(rng.integers(size // 10, size // 3))
            if k % 2:
                cv2.ellipse(bg, (cx, cy), (rw // 2, rh // 2), float(rng.uniform(0, 180)), 0, 360, col, -1)
            else:
                cv2.rectangle(bg, (cx - rw // 2, cy - rh // 2), (cx + rw // 2, cy + rh // 2), col, -1)
        bg = cv2.GaussianBlur(bg, (0, 0), 1.0 + 2.0 * q[3])
    bg = cv2.resize(
        np.ascontiguousarray(bg * 255.0, dtype=np.float32), (full, full), interpolation=cv2.INTER_LINEAR
    )
    if p.background == "fabric":
        period = 3.0 + 3.0 * q[1]
        wave = np.sin(2 * math.pi * np.arange(full, dtype=np.float32) / period)
        bg *= (1.0 + 0.08 * np.outer(wave, wave))[..., None]
    return bg


def _product_width(p: PhotoSpec, category: str) -> float:
    lo, hi = FRAMING[category]
    return lo + (hi - lo) * p.frac


def _homography(p: PhotoSpec, fw: int, fh: int, size: int, category: str) -> np.ndarray:
    s = _product_width(p, category) * size / fw
    a = math.radians(p.angle)
    ca, sa = math.cos(a), math.sin(a)
    src = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], np.float32)
    centred = (src - [fw / 2, fh / 2]) * s
    rot = centred @ np.array([[ca, sa], [-sa, ca]], np.float32)
    dst = rot + np.array(p.corner_jitter, np.float32).reshape(4, 2) * size
    # Keep the whole product in frame (tells must be visible): shrink, then shift.
    span = (dst.max(0) - dst.min(0)).max()
    if span > 0.94 * size:
        dst *= 0.94 * size / span
    centre = np.array(p.centre, np.float32) * size
    dst += centre
    lo, hi = dst.min(0), dst.max(0)
    margin = 0.03 * size
    dst += np.maximum(0, margin - lo) - np.maximum(0, hi - (size - margin))
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def _warp_rect(hm: np.ndarray, r: Rect) -> np.ndarray:
    pts = np.array([[[r[0], r[1]], [r[2], r[1]], [r[2], r[3]], [r[0], r[3]]]], np.float32)
    return cv2.perspectiveTransform(pts, hm)[0]


def _box(hm: np.ndarray, r: Rect, pad: float, size: int) -> tuple[float, float, float, float]:
    pts = _warp_rect(hm, r)
    x0, y0 = pts.min(0) - pad
    x1, y1 = pts.max(0) + pad

    def clip(v: float) -> float:
        return float(min(max(v, 0), size))

    # Outward to whole pixels: the box always holds every pixel the region touches.
    return clip(math.floor(x0)), clip(math.floor(y0)), clip(math.ceil(x1)), clip(math.ceil(y1))


@dataclass(frozen=True)
class SynthPhoto:
    """One rendered photo before JPEG encoding."""

    pixels: np.ndarray  # (size, size, 3) uint8
    boxes: tuple[Box, ...]
    item: ItemSpec
    photo: PhotoSpec


def render_photo(
    item: ItemSpec, photo: PhotoSpec, size: int, active: frozenset[str] | None = None
) -> SynthPhoto:
    """Render one photo of ``item`` (``active`` as in :func:`render_flat`)."""
    flat = _flat_cached(item, size, active)
    fh, fw = flat.rgba.shape[:2]
    hm = _homography(photo, fw, fh, size, item.category)
    scale = _product_width(photo, item.category) * size / fw
    src = flat.rgba
    prefilter = 0.0
    if scale < 0.8:  # optical low-pass before minifying (no aliasing of stitches and prints)
        sigma = 0.45 * math.sqrt(max(1.0 / scale**2 - 1.0, 0.0))
        src = cv2.GaussianBlur(src, (0, 0), sigma)
        prefilter = 3.0 * sigma * scale  # its reach, in photo pixels
    warped = cv2.warpPerspective(src, hm, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    # Everything below works on (size, size, 3) float32 in 0..255.
    fg = warped[..., :3].astype(np.float32)
    a = warped[..., 3].astype(np.float32) * (1.0 / 255.0)

    # Soft contact shadow: the silhouette shifted and blurred at quarter resolution.
    dx, dy, sblur, opacity = photo.shadow
    q = 4
    small_a = cv2.resize(a, (size // q, size // q), interpolation=cv2.INTER_AREA)
    shift = np.float32([[1, 0, dx * size / q], [0, 1, (dy + 0.01) * size / q]])
    small_a = cv2.warpAffine(small_a, shift, (size // q, size // q))
    small_a = cv2.GaussianBlur(small_a, (0, 0), max(0.5, sblur * size / q))

    # Light: a directional gradient, ambient level and vignetting, computed coarse then upsampled;
    # the shadow is folded into the background's share of it.
    direction, strength, ambient, vignette = photo.light
    g = 16
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32) / (g - 1) - 0.5
    light = ambient + strength * (xx * math.cos(direction) + yy * math.sin(direction))
    light *= 1.0 - vignette * (xx**2 + yy**2) * 2.0
    light = cv2.resize(light.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    shadow = cv2.resize(small_a, (size, size), interpolation=cv2.INTER_LINEAR)
    gains = np.array([photo.white_balance[0], 1.0, photo.white_balance[1]], np.float32) * photo.exposure
    bg = _background(photo, size)
    bg *= (1.0 - opacity * shadow)[..., None]
    img = fg
    img -= bg
    img *= a[..., None]
    img += bg  # bg + (fg - bg) * a
    img *= light[..., None] * gains
    gx, gy, gr, gs = photo.glare
    if gs > 0:
        lo = 32
        yy2, xx2 = np.mgrid[0:lo, 0:lo].astype(np.float32) / lo
        blob = np.exp(-((xx2 - gx) ** 2 + (yy2 - gy) ** 2) / (2 * gr * gr)) * (gs * 255.0)
        img += cv2.resize(blob, (size, size), interpolation=cv2.INTER_LINEAR)[..., None]

    # Optics, then the sensor: blur (or motion blur), signal-dependent noise, quantisation.
    pad = 1.5 + prefilter
    if photo.blur_sigma > 0.25:
        sigma = photo.blur_sigma * size / 384
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        pad += 3.0 * sigma
    motion_len, motion_angle = photo.motion
    if motion_len > 0:
        length = motion_len * size / 384
        k = math.ceil(length) | 1
        kernel = np.zeros((k, k), np.float32)
        c = k // 2
        hx, hy = 0.5 * length * math.cos(motion_angle), 0.5 * length * math.sin(motion_angle)
        cv2.line(kernel, (round((c - hx) * 4), round((c - hy) * 4)), (round((c + hx) * 4), round((c + hy) * 4)),
                 1.0, 1, cv2.LINE_AA, 2)  # fmt: skip
        kernel /= max(float(kernel.sum()), 1e-6)
        img = cv2.filter2D(img, -1, kernel)
        pad += length / 2 + 1
    read, shot = photo.noise
    noise = _crop(_noise_bank(max(1024, size + 1), "sensor"), size, size, photo.noise_offset)
    lum = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    np.clip(lum, 0.0, 255.0, out=lum)
    sigma_map = np.sqrt(lum) * shot + (read + 0.0)  # shot noise grows with sqrt(signal)
    img += noise * sigma_map[..., None]
    img += 0.5
    np.clip(img, 0.0, 255.0, out=img)
    pixels = img.astype(np.uint8)

    boxes = [Box(PRODUCT_BOX, *_box(hm, flat.product, 1.0, size))]
    subtlety = {t.name: t.subtlety for t in item.tells}
    for name in sorted(flat.tells, key=FLAG_INDEX.__getitem__):
        boxes.append(Box(name, *_box(hm, flat.tells[name], pad, size), subtlety[name]))
    return SynthPhoto(pixels=pixels, boxes=tuple(boxes), item=item, photo=photo)


@lru_cache(maxsize=16)
def _flat_cached(item: ItemSpec, size: int, active: frozenset[str] | None) -> FlatItem:
    return render_flat(item, size, active)


# --------------------------------------------------------------------------- the dataset


def plan_items(n: int, seed: int, photos_per_item: tuple[int, int] = (1, 4)) -> list[tuple[int, int]]:
    """``(item, photo number)`` for each of ``n`` photos.

    Items have ``photos_per_item`` (inclusive range) photos each; the two items of a pair (one
    genuine, one counterfeit, see :func:`item_spec`) have the same number, so photos are balanced.
    """
    lo, hi = photos_per_item
    if not 1 <= lo <= hi:
        raise ValueError(f"photos_per_item must be 1 <= min <= max, got {photos_per_item}.")
    rng = np.random.default_rng([seed, 0])
    plan: list[tuple[int, int]] = []
    item = 0
    while len(plan) < n:
        count = int(rng.integers(lo, hi + 1))  # both items of a genuine/counterfeit pair
        for _ in range(2):
            plan += [(item, k) for k in range(count)]
            item += 1
    return plan[:n]


def synth_photo(
    seed: int, index: int, item: int, size: int = 384, active: frozenset[str] | None = None
) -> SynthPhoto:
    """Render photo ``index`` (showing item ``item``) of the dataset with ``seed``."""
    return render_photo(item_spec(seed, item), photo_spec(seed, index), size, active)


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG (4:2:0) of ``(H, W, 3)`` uint8 pixels; deterministic for a given libjpeg."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


IMAGE_DIR = "images"


def _write_range(out_dir: str, seed: int, size: int, jobs: list[tuple[int, int, int]]) -> list[dict]:
    cv2.setNumThreads(1)
    rows = []
    for index, item, photo_no in jobs:
        photo = synth_photo(seed, index, item, size)
        name = f"{IMAGE_DIR}/{index:06d}.jpg"
        Path(out_dir, name).write_bytes(encode_jpeg(photo.pixels, photo.photo.jpeg_quality))
        brand = BRANDS[photo.item.brand]
        rows.append(
            {
                "index": index,
                "file": name,
                "label": photo.item.label,
                "item_id": photo.item.item_id,
                "brand": brand.name,
                "category": photo.item.category,
                "flags": tuple(t.name for t in photo.item.tells),
                "boxes": photo.boxes,
                "extra": {
                    "photo": str(photo_no),
                    "serial": photo.item.serial,
                    "jpeg_quality": str(photo.photo.jpeg_quality),
                    "blur_sigma": f"{photo.photo.blur_sigma:.2f}",
                    "motion_blur": f"{photo.photo.motion[0]:.1f}",
                    "background": photo.photo.background,
                },
            }
        )
    return rows


def _render_parts(
    out: str, seed: int, size: int, parts: list[list[tuple[int, int, int]]], workers: int
) -> Iterator[list[dict]]:
    """Manifest rows of each part of the jobs, in order, as each is written."""
    if workers == 1:
        yield from (_write_range(out, seed, size, p) for p in parts)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_write_range, *zip(*[(out, seed, size, p) for p in parts], strict=True))


def generate(
    out_dir: str | Path,
    *,
    n: int,
    seed: int,
    size: int = 384,
    photos_per_item: tuple[int, int] = (1, 4),
    workers: int = 1,
    overwrite: bool = False,
    contact_sheet_count: int = 24,
    progress: Callable[[int], None] | None = None,
) -> list[Record]:
    """Write ``n`` synthetic photos, ``manifest.csv`` and ``contact_sheet.png`` into ``out_dir``.

    Args:
        out_dir: Output folder (created); images go to ``out_dir/images/``.
        n: Number of photos.
        seed: Same seed, same bytes (whatever ``workers`` is).
        size: Square photo side in pixels.
        photos_per_item: Inclusive range of photos per physical item.
        workers: Processes to render with.
        overwrite: Replace a previous synthetic set in ``out_dir`` (only its own files).
        contact_sheet_count: Photos on the contact sheet (0 = none).
        progress: Called with the number of photos each time some are written.

    Returns:
        The records written to the manifest.

    Raises:
        ValueError: a bad argument, or ``out_dir`` already holds files and ``overwrite`` is false.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    if not 64 <= size <= 2048:
        raise ValueError(f"size must be between 64 and 2048 pixels, got {size}.")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and any(out.iterdir()):
        ours = {IMAGE_DIR, "manifest.csv", "contact_sheet.png"}
        others = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if not overwrite or others:
            why = f"it holds {', '.join(others[:5])}" if others else "use --overwrite to replace it"
            raise ValueError(f"{out} is not empty ({why}).")
        shutil.rmtree(out / IMAGE_DIR, ignore_errors=True)
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    plan = plan_items(n, seed, photos_per_item)
    jobs = [(i, item, k) for i, (item, k) in enumerate(plan)]
    chunk = max(1, min(64, len(jobs) // (workers * 4) or 1))
    parts = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    rows = []
    for part in _render_parts(str(out), seed, size, parts, workers):
        rows += part
        if progress is not None:
            progress(len(part))
    rows.sort(key=lambda r: r["index"])
    records = [
        Record(
            file=out / r["file"],
            label=r["label"],
            item_id=r["item_id"],
            brand=r["brand"],
            category=r["category"],
            flags=r["flags"],
            boxes=r["boxes"],
            extra=r["extra"],
            line=i + 2,
        )
        for i, r in enumerate(rows)
    ]
    write_manifest(records, out / "manifest.csv")
    if contact_sheet_count > 0:
        contact_sheet(records[:contact_sheet_count], out / "contact_sheet.png")
    return records


def contact_sheet(
    records: Sequence[Record], path: str | Path, *, columns: int = 6, thumb: int = 192, boxes: bool = True
) -> Path:
    """A grid of photos with their label, brand/category and tell boxes (red) drawn on.

    Args:
        records: Photos to show, in order.
        path: PNG to write.
        columns: Photos per row.
        thumb: Thumbnail side in pixels.
        boxes: Draw tell boxes and names.

    Returns:
        The path written.
    """
    rows = max(1, math.ceil(len(records) / columns))
    caption = 30
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    short = {"monogram_alignment": "monogram", "stitch_irregular": "stitch", "hardware_finish": "hardware",
             "print_quality": "print", "color_shift": "colour", "serial_format": "serial", "logo_font": "logo"}  # fmt: skip
    for i, r in enumerate(records):
        with Image.open(r.file) as img:
            sx, sy = thumb / img.width, thumb / img.height
            tile = img.convert("RGB").resize((thumb, thumb), Image.Resampling.LANCZOS)
        x, y = (i % columns) * thumb, (i // columns) * (thumb + caption)
        sheet.paste(tile, (x, y))
        if boxes:
            for b in r.boxes:
                if b.name == PRODUCT_BOX:
                    continue
                draw.rectangle(
                    (x + b.x0 * sx, y + b.y0 * sy, x + b.x1 * sx, y + b.y1 * sy),
                    outline=(230, 30, 30),
                    width=2,
                )
        colour = (180, 20, 20) if r.label == "counterfeit" else (20, 110, 40)
        draw.text(
            (x + 3, y + thumb + 2), f"{r.label} · {r.brand or ''} {r.category or ''}", fill=colour, font=font
        )
        tells = " ".join(short.get(f, f) for f in r.flags or ())
        draw.text((x + 3, y + thumb + 15), tells, fill=(60, 60, 60), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


def _tell_examples(seed: int, size: int, limit: int) -> list[tuple[int, ItemSpec, PhotoSpec]]:
    out = []
    for index, (item, _) in enumerate(plan_items(limit, seed)):
        spec = item_spec(seed, item)
        if spec.tells:
            out.append((index, spec, photo_spec(seed, index)))
    return out


def tell_visibility(*, seed: int = 0, n: int = 300, size: int = 384, model_size: int = 224) -> list[dict]:
    """How much each tell changes a photo at full size and at the model's input size.

    For every tell of the counterfeit photos among the first ``n``, the photo is rendered with
    and without it (before JPEG); the change is the 99th percentile over the box's pixels of the
    largest per-channel difference, in grey levels, at ``size`` and after the model's resize to
    ``model_size`` (:func:`model.imaging.resize_for_model`).

    Returns:
        One dict per tell: ``flag``, ``subtlety``, ``change_full``, ``change_model``.
    """
    from model.imaging import resize_for_model

    rows = []
    scale = model_size / size
    for _, spec, photo in _tell_examples(seed, size, n):
        full = render_photo(spec, photo, size)
        names = frozenset(t.name for t in spec.tells)
        boxes = {b.name: b for b in full.boxes}
        small_full, _ = resize_for_model(full.pixels, (model_size, model_size))
        for t in spec.tells:
            without = render_photo(spec, photo, size, names - {t.name}).pixels
            small_without, _ = resize_for_model(without, (model_size, model_size))
            b = boxes[t.name]
            changes = []
            for a, c, f in ((full.pixels, without, 1.0), (small_full, small_without, scale)):
                x0, y0 = int(b.x0 * f), int(b.y0 * f)
                x1, y1 = max(x0 + 1, math.ceil(b.x1 * f)), max(y0 + 1, math.ceil(b.y1 * f))
                d = np.abs(a[y0:y1, x0:x1].astype(np.int16) - c[y0:y1, x0:x1].astype(np.int16)).max(axis=2)
                changes.append(float(np.percentile(d, 99)))
            rows.append(
                {
                    "flag": t.name,
                    "subtlety": t.subtlety,
                    "change_full": changes[0],
                    "change_model": changes[1],
                }
            )
    return rows


def tell_closeups(
    path: str | Path, *, seed: int = 0, size: int = 384, model_size: int = 224, tile: int = 120
) -> Path:
    """A figure with, for each flag, an obvious and a subtle example of the tell, close up.

    Each example shows the box region without the tell, with it at ``size``, and with it as the
    model sees it at ``model_size`` (resized back up, nearest neighbour).

    Returns:
        The PNG written.
    """
    from model.imaging import resize_for_model

    examples = _tell_examples(seed, size, 3000)
    label_w, caption = 150, 16
    sheet = Image.new(
        "RGB", (label_w + 6 * tile + 10, caption + len(FLAG_NAMES) * (tile + 6)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    heads = ("without", f"with, {size} px", f"with, {model_size} px")
    for k, head in enumerate(heads * 2):
        draw.text((label_w + k * tile + (10 if k >= 3 else 0) + 4, 2), head, fill=(40, 40, 40), font=font)
    for row, flag in enumerate(FLAG_NAMES):
        y = caption + row * (tile + 6)
        chosen = []
        for lo, hi in ((0.0, 0.3), (0.75, 1.0)):
            found = next(
                (
                    (i, s, p)
                    for i, s, p in examples
                    for t in s.tells
                    if t.name == flag and lo <= t.subtlety <= hi
                ),
                None,
            )
            if found is not None:
                chosen.append(found)
        draw.text((4, y + tile // 2 - 14), flag, fill=(0, 0, 0), font=font)
        for col, (_, spec, photo) in enumerate(chosen):
            tell = next(t for t in spec.tells if t.name == flag)
            names = frozenset(t.name for t in spec.tells)
            full = render_photo(spec, photo, size)
            without = render_photo(spec, photo, size, names - {flag}).pixels
            small, _ = resize_for_model(full.pixels, (model_size, model_size))
            b = next(b for b in full.boxes if b.name == flag)
            cx, cy = (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2
            r = max(b.x1 - b.x0, b.y1 - b.y0) / 2 + 4
            crop = (max(0, cx - r), max(0, cy - r), min(size, cx + r), min(size, cy + r))
            f = model_size / size
            tiles = [
                Image.fromarray(without).crop(crop).resize((tile, tile), Image.Resampling.LANCZOS),
                Image.fromarray(full.pixels).crop(crop).resize((tile, tile), Image.Resampling.LANCZOS),
                Image.fromarray(small)
                .crop(tuple(v * f for v in crop))
                .resize((tile, tile), Image.Resampling.NEAREST),
            ]
            for k, img in enumerate(tiles):
                sheet.paste(img, (label_w + (col * 3 + k) * tile + col * 10, y))
            draw.text(
                (4, y + tile // 2 + 2 + 14 * col),
                f"subtlety {tell.subtlety:.2f}",
                fill=(90, 90, 90),
                font=font,
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


__all__ = [
    "BRANDS",
    "CATEGORIES",
    "contact_sheet",
    "generate",
    "item_spec",
    "photo_spec",
    "plan_items",
    "render_flat",
    "render_photo",
    "synth_photo",
    "tell_closeups",
    "tell_visibility",
]
