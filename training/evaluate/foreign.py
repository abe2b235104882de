"""Photos a counterfeit model should refuse to judge, made at run time: the foreign-photo corpus.

A model trained on one category meets, in a crawler's stream, photos of everything else: other
goods, screenshots, textures, empty or corrupted frames. Its out-of-distribution test must call
them foreign. Nothing here is downloaded: every photo is a scikit-image sample, drawn with
Pillow/numpy from a fixed seed, or rendered by the synthetic-goods generator.

Categories (``(category, name, (H, W, 3) uint8)`` rows of :func:`foreign_corpus`):

* ``photos``: scikit-image's sample photographs (people, animals, food, objects, micrographs);
* ``textures``: scikit-image's textures and crops of the photos, tiled and stretched;
* ``screenshots``: rendered pages of text, buttons and panels, like a listing's screenshot;
* ``blank``: uniform frames, black, white and colours;
* ``noise``: uniform, Gaussian and salt-and-pepper noise;
* ``synthetic_goods``: handbags, wallets and belts of the synthetic generator (leave them out for
  a model trained on them).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

SAMPLE_PHOTOS: tuple[str, ...] = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "text", "page", "hubble_deep_field",
    "immunohistochemistry", "moon", "coins", "retina", "colorwheel", "clock", "cat", "horse",
    "logo", "motorcycle_left", "motorcycle_right", "microaneurysms",
)  # fmt: skip
"""scikit-image's bundled sample images used as foreign photos (missing ones are skipped)."""

TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel", "checkerboard", "rough_wall", "cell")

CATEGORIES: tuple[str, ...] = ("photos", "textures", "screenshots", "blank", "noise", "synthetic_goods")
SIDE = 384  # rendered photos are this square side; the model's resize applies as to any photo


def _rgb(img: np.ndarray) -> np.ndarray:
    """Any scikit-image sample as ``(H, W, 3)`` uint8."""
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = a.astype(np.float64)
        span = float(a.max() - a.min()) or 1.0
        a = ((a - a.min()) * (255.0 / span)).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _skimage(names: tuple[str, ...]) -> Iterator[tuple[str, np.ndarray]]:
    try:
        from skimage import data as skdata
    except ImportError:  # scikit-image is a dev dependency; the corpus shrinks without it
        return
    for name in names:
        try:
            yield name, _rgb(getattr(skdata, name)())
        except Exception:  # a sample this scikit-image version does not ship
            continue


def _textures(rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    for name, img in _skimage(TEXTURES):
        yield name, img
        tile = img[: max(8, img.shape[0] // 3), : max(8, img.shape[1] // 3)]
        yield f"{name}-tiled", np.tile(tile, (3, 3, 1))
    for i in range(6):  # stripes and checks of random period and colours
        period = int(rng.integers(6, 40))
        yy, xx = np.mgrid[0:SIDE, 0:SIDE]
        pattern = ((xx // period + (yy // period) * (i % 2)) % 2).astype(bool)
        a, b = rng.integers(0, 256, (2, 3), dtype=np.uint8)
        yield f"pattern-{i}", np.where(pattern[:, :, None], a, b).astype(np.uint8)


def _screenshot(rng: np.random.Generator, i: int) -> np.ndarray:
    """A page of a web shop or chat: header bar, text lines, buttons, image placeholders."""
    bg = tuple(int(v) for v in rng.integers(225, 256, 3))
    img = Image.new("RGB", (SIDE, SIDE), bg)
    draw = ImageDraw.Draw(img)
    accent = tuple(int(v) for v in rng.integers(0, 200, 3))
    draw.rectangle((0, 0, SIDE, int(rng.integers(28, 56))), fill=accent)
    y = 70
    while y < SIDE - 20:
        kind = rng.random()
        if kind < 0.6:
            words = " ".join(
                "".join(chr(97 + int(c)) for c in rng.integers(0, 26, rng.integers(2, 9))) for _ in range(6)
            )
            draw.text((12, y), words, fill=(30, 30, 30))
            y += 18
        elif kind < 0.8:
            w = int(rng.integers(80, 200))
            draw.rounded_rectangle((12, y, 12 + w, y + 30), radius=8, fill=accent)
            draw.text((22, y + 9), "BUY NOW" if i % 2 else "Add to cart", fill=(255, 255, 255))
            y += 42
        else:
            h = int(rng.integers(40, 90))
            draw.rectangle((12, y, SIDE - 12, y + h), fill=tuple(int(v) for v in rng.integers(150, 230, 3)))
            y += h + 10
    return np.asarray(img)


def _noise(rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    for i in range(4):
        yield f"uniform-{i}", rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        g = rng.normal(rng.uniform(60, 200), rng.uniform(10, 60), (SIDE, SIDE, 3))
        yield f"gaussian-{i}", np.clip(g, 0, 255).astype(np.uint8)
        sp = np.full((SIDE, SIDE, 3), 128, np.uint8)
        mask = rng.random((SIDE, SIDE))
        sp[mask < 0.1], sp[mask > 0.9] = 0, 255
        yield f"salt-pepper-{i}", sp


def _synthetic_goods(n: int) -> Iterator[tuple[str, np.ndarray]]:
    from training.data.synth import synth_photo

    for i in range(n):
        yield f"synth-{i}", synth_photo(seed=9001, index=i, item=i, size=SIDE).pixels


def foreign_corpus(
    *, synthetic_goods: bool = True, n_synthetic: int = 40, seed: int = 0
) -> list[tuple[str, str, np.ndarray]]:
    """The corpus as ``(category, name, pixels)`` rows, the same on every call.

    Args:
        synthetic_goods: Include the synthetic generator's goods (False for a model trained on them).
        n_synthetic: How many of those.
        seed: Seed of the drawn photos.
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, np.ndarray]] = [("photos", n, px) for n, px in _skimage(SAMPLE_PHOTOS)]
    rows += [("textures", n, px) for n, px in _textures(rng)]
    rows += [("screenshots", f"screenshot-{i}", _screenshot(rng, i)) for i in range(12)]
    greys = [(0, 0, 0), (255, 255, 255), (128, 128, 128)]
    colours = greys + [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(5)]
    rows += [("blank", f"blank-{c}", np.full((SIDE, SIDE, 3), c, np.uint8)) for c in colours]
    rows += [("noise", n, px) for n, px in _noise(rng)]
    if synthetic_goods:
        rows += [("synthetic_goods", n, px) for n, px in _synthetic_goods(n_synthetic)]
    return rows
