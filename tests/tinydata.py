"""A tiny labelled photo set built at test time: genuine and counterfeit items with boxed tells.

Each photo is a noisy backdrop with a "product" panel; it carries a square badge whose colour is
the reference shade on genuine items and shifted on counterfeits (flag ``color_shift``, boxed),
and counterfeits with an even index also get a misplaced stripe (flag ``stitch_irregular``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

GENUINE_BADGE = (200, 40, 40)
FAKE_BADGE = (40, 60, 200)


def make_photo(
    rng: np.random.Generator, size: int, counterfeit: bool, stripe: bool
) -> tuple[np.ndarray, list]:
    img = rng.normal(128, 20, (size, size, 3))
    x0, y0 = rng.integers(2, size // 6, 2)
    x1, y1 = size - rng.integers(2, size // 6, 2)
    img[y0:y1, x0:x1] = rng.uniform(150, 220, 3)  # the product panel
    s = size // 4
    bx = int(rng.integers(x0, max(x0 + 1, x1 - s)))
    by = int(rng.integers(y0, max(y0 + 1, y1 - s)))
    img[by : by + s, bx : bx + s] = FAKE_BADGE if counterfeit else GENUINE_BADGE
    boxes = [("product", x0, y0, x1, y1)]
    flags = []
    if counterfeit:
        flags.append("color_shift")
        boxes.append(("color_shift", bx, by, bx + s, by + s))
        if stripe:
            sy = int(rng.integers(y0, y1 - 3))
            img[sy : sy + 3, x0:x1] = 20
            flags.append("stitch_irregular")
            boxes.append(("stitch_irregular", x0, sy, x1, sy + 3))
    pixels = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    return pixels, [(name, int(a), int(b), int(c), int(d)) for name, a, b, c, d in boxes], flags


def make_dataset(root: Path, *, n: int = 48, size: int = 96, seed: int = 0, with_split: bool = False) -> Path:
    """Write ``n`` JPEGs and ``manifest.csv`` under ``root``; return the manifest path.

    Half are counterfeit. With ``with_split`` the manifest has a split column (60/20/20).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        counterfeit = i % 2 == 1
        pixels, boxes, flags = make_photo(rng, size, counterfeit, stripe=counterfeit and (i // 2) % 2 == 0)
        label = "counterfeit" if counterfeit else "genuine"
        name = f"{label}/{i:04d}.jpg"
        (root / label).mkdir(exist_ok=True)
        Image.fromarray(pixels).save(root / name, quality=92)
        row = {
            "file": name,
            "label": label,
            "item_id": f"item{i:04d}",
            "brand": "acme" if i % 4 < 2 else "globex",
            "category": "bag",
            "flags": ";".join(flags) if flags else "none",
            "boxes": ";".join(f"{b[0]} {b[1]} {b[2]} {b[3]} {b[4]}" for b in boxes),
        }
        if with_split:
            row["split"] = ("train", "train", "train", "val", "test")[(i // 2) % 5]
        rows.append(row)
    path = root / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
