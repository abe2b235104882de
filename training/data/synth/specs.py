"""What to draw: the brands, and the specification of every item, photo and tell (all seeded).

Determinism: the item plan comes from ``(seed, 0)``, item *i* from ``(seed, 1, i)``, photo *k*
from ``(seed, 2, k)`` and tell details from ``(seed, 3, i, flag)``; the order of the draws from
each generator is part of the output (same seed, same bytes), so never reorder them.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from model.flags import FLAG_INDEX, FLAG_NAMES, LABELS
from training.data.synth.layout import CATEGORIES

Colour = tuple[float, float, float]
"""RGB, 0..1."""


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

LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # genuine serials never use I or O
LOOKALIKES = {"0": "O", "1": "I", "8": "B", "5": "S", "2": "Z", "B": "8", "S": "5", "Z": "2", "D": "0"}
"""Characters a counterfeit serial swaps for one that looks alike."""

BACKGROUNDS: tuple[str, ...] = ("sweep", "wood", "fabric", "marble", "clutter")


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
        """Stable id of the physical item, e.g. ``item00042``."""
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


def tell_rng(seed: int, item: int, name: str) -> np.random.Generator:
    """The generator of tell ``name``'s details on item ``item`` (a fresh one on every call)."""
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
            out.append(LETTERS[int(rng.integers(len(LETTERS)))])
        elif ch == "D":
            out.append(str(int(rng.integers(10))))
        else:
            out.append(ch)
    return "".join(out)


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


def plan_items(n: int, seed: int, photos_per_item: tuple[int, int] = (1, 4)) -> list[tuple[int, int]]:
    """``(item, photo number)`` for each of ``n`` photos.

    Items have ``photos_per_item`` (inclusive range) photos each; the two items of a pair (one
    genuine, one counterfeit, see :func:`item_spec`) have the same number, so photos are balanced.

    Args:
        n: Number of photos.
        seed: Dataset seed.
        photos_per_item: ``(min, max)`` photos of one physical item.

    Returns:
        ``n`` pairs ``(item index, photo number of that item)``, in photo order.

    Raises:
        ValueError: ``photos_per_item`` is not ``1 <= min <= max``.
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
