"""Writing a synthetic set: photos rendered in parts (in-process or in workers), manifest, contact sheet."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from training.data.manifest import Record, write_manifest
from training.data.synth.photo import SynthPhoto, synth_photo
from training.data.synth.preview import contact_sheet
from training.data.synth.specs import BRANDS, plan_items

IMAGE_DIR = "images"
CONTACT_SHEET = "contact_sheet.png"
"""Written beside every synthetic set's manifest: also what marks a dataset as synthetic."""


def is_synthetic(manifest: str | Path) -> bool:
    """Whether ``manifest`` (a file or folder) is a set this generator wrote."""
    path = Path(manifest)
    return ((path if path.is_dir() else path.parent) / CONTACT_SHEET).is_file()


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG (4:2:0) of ``(H, W, 3)`` uint8 pixels; deterministic for a given libjpeg."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _row(photo: SynthPhoto, index: int, name: str, photo_no: int) -> dict:
    """The manifest row of one written photo (a plain dict: it crosses process boundaries)."""
    brand = BRANDS[photo.item.brand]
    return {
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


def _write_range(out_dir: str, seed: int, size: int, jobs: list[tuple[int, int, int]]) -> list[dict]:
    """Render and write the photos ``(index, item, photo number)`` of ``jobs``; their manifest rows."""
    cv2.setNumThreads(1)
    rows = []
    for index, item, photo_no in jobs:
        photo = synth_photo(seed, index, item, size)
        name = f"{IMAGE_DIR}/{index:06d}.jpg"
        Path(out_dir, name).write_bytes(encode_jpeg(photo.pixels, photo.photo.jpeg_quality))
        rows.append(_row(photo, index, name, photo_no))
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


def _check_args(n: int, size: int, workers: int) -> None:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    if not 64 <= size <= 2048:
        raise ValueError(f"size must be between 64 and 2048 pixels, got {size}.")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Create ``out/images``; refuse a folder with files of its own, or ours without ``overwrite``."""
    if out.exists() and any(out.iterdir()):
        ours = {IMAGE_DIR, "manifest.csv", CONTACT_SHEET}
        others = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if not overwrite or others:
            why = f"it holds {', '.join(others[:5])}" if others else "use --overwrite to replace it"
            raise ValueError(f"{out} is not empty ({why}).")
        shutil.rmtree(out / IMAGE_DIR, ignore_errors=True)
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)


def _records(out: Path, rows: list[dict]) -> list[Record]:
    rows.sort(key=lambda r: r["index"])
    return [
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
    _check_args(n, size, workers)
    out = Path(out_dir).expanduser().absolute()
    _prepare_out(out, overwrite)
    plan = plan_items(n, seed, photos_per_item)
    jobs = [(i, item, k) for i, (item, k) in enumerate(plan)]
    chunk = max(1, min(64, len(jobs) // (workers * 4) or 1))
    parts = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    rows = []
    for part in _render_parts(str(out), seed, size, parts, workers):
        rows += part
        if progress is not None:
            progress(len(part))
    records = _records(out, rows)
    write_manifest(records, out / "manifest.csv")
    if contact_sheet_count > 0:
        contact_sheet(records[:contact_sheet_count], out / CONTACT_SHEET)
    return records
