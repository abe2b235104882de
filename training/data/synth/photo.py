"""A photo of a flat item: pose (homography), scene, shadow, light, optics, sensor, and the boxes.

Everything here works on ``(size, size, 3)`` float32 in 0..255 until the final quantisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from model.flags import FLAG_INDEX
from training.data.manifest import PRODUCT_BOX, Box
from training.data.synth.draw import crop, noise_bank
from training.data.synth.flat import FlatItem, render_flat
from training.data.synth.layout import FRAMING, Rect
from training.data.synth.specs import ItemSpec, PhotoSpec, item_spec, photo_spec

# --------------------------------------------------------------------------- backgrounds


@dataclass(frozen=True)
class Scene:
    """What a background painter draws from; it returns the scene ``(s, s, 3)`` in 0..1."""

    a: np.ndarray  # (3,) float32, the first scene colour
    b: np.ndarray  # (3,) float32, the second
    q: tuple[float, ...]  # 8 parameters in 0..1 (PhotoSpec.bg_params)
    xx: np.ndarray  # (s, s) float32 coordinates in 0..1
    yy: np.ndarray
    low: np.ndarray  # (s, s) float32, a smooth random field in 0..1
    rng: np.random.Generator  # the scene's generator (after ``low``)
    size: int  # s: half the photo's side (backgrounds are drawn at half size)


def _sweep(sc: Scene) -> np.ndarray:
    t = np.clip(sc.yy * (0.6 + sc.q[0]) + 0.2 * sc.low - 0.1, 0, 1)[..., None]
    return sc.a * (1 - t) + (0.6 * sc.a + 0.4 * sc.b) * t


def _wood(sc: Scene) -> np.ndarray:
    ang = sc.q[0] * math.pi
    u = sc.xx * math.cos(ang) + sc.yy * math.sin(ang)
    rings = 0.5 + 0.5 * np.sin(2 * math.pi * (6 + 10 * sc.q[1]) * u + 5 * sc.low)
    base = sc.a * 0.5 + np.asarray((0.45, 0.3, 0.18), np.float32) * 0.5
    return base * (0.75 + 0.25 * rings)[..., None]


def _fabric(sc: Scene) -> np.ndarray:
    return sc.a * (0.88 + 0.1 * sc.low)[..., None]  # the weave is added at full size


def _marble(sc: Scene) -> np.ndarray:
    size = sc.size
    fine = cv2.resize(sc.rng.random((24, 24), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    veins = np.abs(np.sin(2 * math.pi * (1.5 * sc.xx + (0.5 + sc.q[1]) * sc.yy + 1.5 * sc.low + 0.4 * fine)))
    veins = np.clip(veins * 6.0, 0, 1)  # thin dark veins where the sine crosses zero
    stone = (0.82 + 0.12 * sc.a) * (0.93 + 0.07 * fine)[..., None]
    return stone * (0.78 + 0.22 * veins)[..., None]


def _clutter(sc: Scene) -> np.ndarray:
    """Out-of-focus objects on a table."""
    size, rng = sc.size, sc.rng
    bg = np.empty((size, size, 3), np.float32)
    bg[:] = sc.a * (0.85 + 0.15 * sc.low)[..., None]
    for k in range(3 + int(sc.q[2] * 4)):
        col = tuple(float(v) for v in rng.random(3) * 0.9)
        cx, cy = int(rng.integers(size)), int(rng.integers(size))
        rw, rh = int(rng.integers(size // 10, size // 3)), int(rng.integers(size // 10, size // 3))
        if k % 2:
            cv2.ellipse(bg, (cx, cy), (rw // 2, rh // 2), float(rng.uniform(0, 180)), 0, 360, col, -1)
        else:
            cv2.rectangle(bg, (cx - rw // 2, cy - rh // 2), (cx + rw // 2, cy + rh // 2), col, -1)
    return cv2.GaussianBlur(bg, (0, 0), 1.0 + 2.0 * sc.q[3])


BACKGROUND_PAINTERS: dict[str, Callable[[Scene], np.ndarray]] = {
    "sweep": _sweep,
    "wood": _wood,
    "fabric": _fabric,
    "marble": _marble,
    "clutter": _clutter,
}
"""Each scene of :data:`~training.data.synth.specs.BACKGROUNDS`."""


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
    bg = BACKGROUND_PAINTERS[p.background](Scene(a, b, q, xx, yy, low, rng, size))
    bg = cv2.resize(
        np.ascontiguousarray(bg * 255.0, dtype=np.float32), (full, full), interpolation=cv2.INTER_LINEAR
    )
    if p.background == "fabric":
        period = 3.0 + 3.0 * q[1]
        wave = np.sin(2 * math.pi * np.arange(full, dtype=np.float32) / period)
        bg *= (1.0 + 0.08 * np.outer(wave, wave))[..., None]
    return bg


# --------------------------------------------------------------------------- pose


def _product_width(p: PhotoSpec, category: str) -> float:
    lo, hi = FRAMING[category]
    return lo + (hi - lo) * p.frac


def _homography(p: PhotoSpec, fw: int, fh: int, size: int, category: str) -> np.ndarray:
    """Flat pixels -> photo pixels: scale, rotate, perspective, then kept in frame. ``(3, 3)``."""
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


# --------------------------------------------------------------------------- the photo


@dataclass(frozen=True)
class SynthPhoto:
    """One rendered photo before JPEG encoding."""

    pixels: np.ndarray  # (size, size, 3) uint8
    boxes: tuple[Box, ...]
    item: ItemSpec
    photo: PhotoSpec


def _warp(rgba: np.ndarray, hm: np.ndarray, scale: float, size: int) -> tuple[np.ndarray, float]:
    """The flat item in the photo ``(size, size, 4)`` uint8, and the low-pass's reach in photo pixels."""
    src = rgba
    prefilter = 0.0
    if scale < 0.8:  # optical low-pass before minifying (no aliasing of stitches and prints)
        sigma = 0.45 * math.sqrt(max(1.0 / scale**2 - 1.0, 0.0))
        src = cv2.GaussianBlur(src, (0, 0), sigma)
        prefilter = 3.0 * sigma * scale  # its reach, in photo pixels
    warped = cv2.warpPerspective(src, hm, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    return warped, prefilter


def _scene(warped: np.ndarray, photo: PhotoSpec, size: int) -> np.ndarray:
    """The product over its background with contact shadow, light, white balance and glare."""
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
    return img


def _optics(img: np.ndarray, photo: PhotoSpec, size: int, pad: float) -> tuple[np.ndarray, float]:
    """Focus blur or motion blur; returns the image and ``pad`` grown by the blur's reach (pixels)."""
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
    return img, pad


def _sensor(img: np.ndarray, photo: PhotoSpec, size: int) -> np.ndarray:
    """Signal-dependent noise and quantisation: ``(size, size, 3)`` uint8 (``img`` is changed)."""
    read, shot = photo.noise
    noise = crop(noise_bank(max(1024, size + 1), "sensor"), size, size, photo.noise_offset)
    lum = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    np.clip(lum, 0.0, 255.0, out=lum)
    sigma_map = np.sqrt(lum) * shot + (read + 0.0)  # shot noise grows with sqrt(signal)
    img += noise * sigma_map[..., None]
    img += 0.5
    np.clip(img, 0.0, 255.0, out=img)
    return img.astype(np.uint8)


def render_photo(
    item: ItemSpec, photo: PhotoSpec, size: int, active: frozenset[str] | None = None
) -> SynthPhoto:
    """Render one photo of ``item``.

    Args:
        item: The item.
        photo: Pose, scene, light and camera.
        size: Square photo side in pixels.
        active: Tells to draw, as in :func:`~training.data.synth.flat.render_flat`.

    Returns:
        The pixels and the boxes: the product's, then each drawn tell's (padded by the blur's reach).
    """
    flat = _flat_cached(item, size, active)
    fh, fw = flat.rgba.shape[:2]
    hm = _homography(photo, fw, fh, size, item.category)
    warped, prefilter = _warp(flat.rgba, hm, _product_width(photo, item.category) * size / fw, size)
    img = _scene(warped, photo, size)
    # Optics, then the sensor: blur (or motion blur), signal-dependent noise, quantisation.
    img, pad = _optics(img, photo, size, 1.5 + prefilter)
    pixels = _sensor(img, photo, size)
    boxes = [Box(PRODUCT_BOX, *_box(hm, flat.product, 1.0, size))]
    subtlety = {t.name: t.subtlety for t in item.tells}
    for name in sorted(flat.tells, key=FLAG_INDEX.__getitem__):
        boxes.append(Box(name, *_box(hm, flat.tells[name], pad, size), subtlety[name]))
    return SynthPhoto(pixels=pixels, boxes=tuple(boxes), item=item, photo=photo)


@lru_cache(maxsize=16)
def _flat_cached(item: ItemSpec, size: int, active: frozenset[str] | None) -> FlatItem:
    return render_flat(item, size, active)


def synth_photo(
    seed: int, index: int, item: int, size: int = 384, active: frozenset[str] | None = None
) -> SynthPhoto:
    """Render photo ``index`` (showing item ``item``) of the dataset with ``seed``."""
    return render_photo(item_spec(seed, item), photo_spec(seed, index), size, active)
