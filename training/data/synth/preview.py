"""Looking at a synthetic set: the contact sheet, how visible each tell is, and tell close-ups."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.flags import FLAG_NAMES
from training.data.manifest import PRODUCT_BOX, Box, Record
from training.data.synth.photo import render_photo
from training.data.synth.specs import ItemSpec, PhotoSpec, item_spec, photo_spec, plan_items

_SHORT = {"monogram_alignment": "monogram", "stitch_irregular": "stitch", "hardware_finish": "hardware",
          "print_quality": "print", "color_shift": "colour", "serial_format": "serial", "logo_font": "logo"}  # fmt: skip
"""Flag names short enough for a contact sheet's caption."""


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
        tells = " ".join(_SHORT.get(f, f) for f in r.flags or ())
        draw.text((x + 3, y + thumb + 15), tells, fill=(60, 60, 60), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


def _tell_examples(seed: int, size: int, limit: int) -> list[tuple[int, ItemSpec, PhotoSpec]]:
    """``(photo index, item, photo)`` of each counterfeit photo among the first ``limit``."""
    out = []
    for index, (item, _) in enumerate(plan_items(limit, seed)):
        spec = item_spec(seed, item)
        if spec.tells:
            out.append((index, spec, photo_spec(seed, index)))
    return out


def _change(a: np.ndarray, c: np.ndarray, b: Box, f: float) -> float:
    """99th percentile of the largest per-channel difference of ``a`` and ``c`` in box ``b`` scaled by ``f``."""
    x0, y0 = int(b.x0 * f), int(b.y0 * f)
    x1, y1 = max(x0 + 1, math.ceil(b.x1 * f)), max(y0 + 1, math.ceil(b.y1 * f))
    d = np.abs(a[y0:y1, x0:x1].astype(np.int16) - c[y0:y1, x0:x1].astype(np.int16)).max(axis=2)
    return float(np.percentile(d, 99))


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
            rows.append(
                {
                    "flag": t.name,
                    "subtlety": t.subtlety,
                    "change_full": _change(full.pixels, without, b, 1.0),
                    "change_model": _change(small_full, small_without, b, scale),
                }
            )
    return rows


def _closeup_examples(
    examples: list[tuple[int, ItemSpec, PhotoSpec]], flag: str
) -> list[tuple[int, ItemSpec, PhotoSpec]]:
    """The first obvious (subtlety <= 0.3) and first subtle (>= 0.75) example of ``flag``, if any."""
    chosen = []
    for lo, hi in ((0.0, 0.3), (0.75, 1.0)):
        found = next(
            ((i, s, p) for i, s, p in examples for t in s.tells if t.name == flag and lo <= t.subtlety <= hi),
            None,
        )
        if found is not None:
            chosen.append(found)
    return chosen


def _closeup_tiles(
    spec: ItemSpec, photo: PhotoSpec, flag: str, size: int, model_size: int, tile: int
) -> list[Image.Image]:
    """Around the tell's box: without it, with it at ``size``, with it at ``model_size`` (nearest)."""
    from model.imaging import resize_for_model

    names = frozenset(t.name for t in spec.tells)
    full = render_photo(spec, photo, size)
    without = render_photo(spec, photo, size, names - {flag}).pixels
    small, _ = resize_for_model(full.pixels, (model_size, model_size))
    b = next(b for b in full.boxes if b.name == flag)
    cx, cy = (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2
    r = max(b.x1 - b.x0, b.y1 - b.y0) / 2 + 4
    crop = (max(0, cx - r), max(0, cy - r), min(size, cx + r), min(size, cy + r))
    f = model_size / size
    return [
        Image.fromarray(without).crop(crop).resize((tile, tile), Image.Resampling.LANCZOS),
        Image.fromarray(full.pixels).crop(crop).resize((tile, tile), Image.Resampling.LANCZOS),
        Image.fromarray(small)
        .crop(tuple(v * f for v in crop))
        .resize((tile, tile), Image.Resampling.NEAREST),
    ]


def tell_closeups(
    path: str | Path, *, seed: int = 0, size: int = 384, model_size: int = 224, tile: int = 120
) -> Path:
    """A figure with, for each flag, an obvious and a subtle example of the tell, close up.

    Each example shows the box region without the tell, with it at ``size``, and with it as the
    model sees it at ``model_size`` (resized back up, nearest neighbour).

    Returns:
        The PNG written.
    """
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
        draw.text((4, y + tile // 2 - 14), flag, fill=(0, 0, 0), font=font)
        for col, (_, spec, photo) in enumerate(_closeup_examples(examples, flag)):
            tell = next(t for t in spec.tells if t.name == flag)
            for k, img in enumerate(_closeup_tiles(spec, photo, flag, size, model_size, tile)):
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
