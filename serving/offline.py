"""``authlens score``: the API's predictor over files, folders or a manifest, without a server.

Usage: ``authlens score --bundle bundles/demo photos/ --out results.jsonl``

Each input file is one item unless a manifest gives ``item_id`` or ``--item`` makes all the
given photos one item. An item whose photo cannot be used gets an error line, as ``/v1/score``
answers 422 for it. Results are identical to the API's for the same bytes: same predictor, and
ONNX Runtime's outputs do not depend on the batch an image shares. ``--engine ray``
(:mod:`serving.batch`) writes the same lines through :func:`judge_items`.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import numpy as np

from model.imaging import ImageError
from serving.core.config import MAX_PHOTOS_PER_ITEM
from serving.predictor import Predictor, PreparedImage
from serving.receipts import ReceiptSigner

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")


class InputError(ValueError):
    """A path or manifest that cannot be scored; the message names it."""


@dataclass
class OfflineItem:
    item_id: str
    files: list[Path]


@dataclass
class Summary:
    items: int = 0
    images: int = 0
    errors: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    skipped: int = 0  # items already in the output of an earlier run (Ray batch scoring resumes)

    def add(self, line: dict[str, Any]) -> None:
        """Count one result line (see :func:`judge_items`)."""
        self.items += 1
        self.images += len(line["files"])
        if "error" in line:
            self.errors += 1
        else:
            self.verdicts[line["item"]["verdict"]] += 1

    def merge(self, other: Summary) -> None:
        """Add another part's counts (seconds are the caller's: parts run in parallel)."""
        self.items += other.items
        self.images += other.images
        self.errors += other.errors
        self.verdicts.update(other.verdicts)


MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


def manifest_rows(text: str, *, name: str) -> list[tuple[int, dict]]:
    """``(line number, row)`` of a CSV (header row) or JSONL (one object per line) manifest.

    Args:
        text: The manifest's content.
        name: Its path or URI: the suffix (``.csv`` or else JSONL) picks the format; errors name it.

    Raises:
        InputError: no ``file`` column, or a line that is not a JSON object.
    """
    shape = "a CSV with a `file` column or JSONL objects with a `file` field (optional `item_id`)"
    if name.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "file" not in reader.fieldnames:
            raise InputError(f"{name}: a manifest is {shape}.")
        return list(enumerate(reader, start=2))
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: line {n} is not JSON ({exc.msg}); a manifest is {shape}.") from None
        if not isinstance(row, dict):
            raise InputError(f"{name}: line {n} is not a JSON object; a manifest is {shape}.")
        rows.append((n, {k: "" if v is None else str(v) for k, v in row.items()}))
    return rows


def _read_manifest(path: Path) -> list[OfflineItem]:
    items: dict[str, OfflineItem] = {}
    with open(path, newline="", encoding="utf-8") as f:
        text = f.read()
    for n, row in manifest_rows(text, name=str(path)):
        rel = (row.get("file") or "").strip()
        if not rel:
            raise InputError(f"{path}: line {n} has an empty `file`.")
        file = (path.parent / rel).resolve()
        key = (row.get("item_id") or "").strip() or str(file)
        items.setdefault(key, OfflineItem(key, [])).files.append(file)
    return list(items.values())


def collect(paths: Sequence[Path], *, one_item: bool = False) -> list[OfflineItem]:
    """Expand files, folders (recursively, by image suffix) and CSV/JSONL manifests into items.

    Raises:
        InputError: a missing path, an empty selection, or an item with more than 8 photos.
    """
    items: list[OfflineItem] = []
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder.")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            items.extend(OfflineItem(str(f), [f]) for f in files)
        elif p.suffix.lower() in MANIFEST_SUFFIXES:
            items.extend(_read_manifest(p))
        else:
            items.append(OfflineItem(str(p), [p]))
    if one_item:
        items = [OfflineItem("item", [f for it in items for f in it.files])]
    if not items or not any(it.files for it in items):
        raise InputError("No photos found in the given paths (looked for " + ", ".join(IMAGE_SUFFIXES) + ").")
    for it in items:
        if len(it.files) > MAX_PHOTOS_PER_ITEM:
            raise InputError(
                f"Item {it.item_id!r} has {len(it.files)} photos; an item has at most {MAX_PHOTOS_PER_ITEM}."
            )
    return items


def _chunks(items: list[OfflineItem], batch_size: int) -> Iterator[list[OfflineItem]]:
    chunk: list[OfflineItem] = []
    n = 0
    for it in items:
        if chunk and n + len(it.files) > batch_size:
            yield chunk
            chunk, n = [], 0
        chunk.append(it)
        n += len(it.files)
    if chunk:
        yield chunk


def load_photo(predictor: Predictor, path: Path, explain: bool) -> PreparedImage | ImageError:
    """A photo file's model input, or the :class:`ImageError` that says why it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageError(f"{path}: cannot be read ({exc.strerror}).")
    return prepare(predictor, data, explain)


def prepare(predictor: Predictor, data: bytes, explain: bool) -> PreparedImage | ImageError:
    """A photo's model input, or the :class:`ImageError` that says why it cannot be used."""
    try:
        return predictor.prepare(data, explain=explain)
    except ImageError as exc:
        return exc


@dataclass
class LoadedItem:
    """An item whose photos are decoded (or failed to): what :func:`judge_items` scores."""

    item_id: str
    files: list[str]  # paths or URIs as given, or names of photos that came as bytes
    photos: list[PreparedImage | ImageError]


def judge_items(
    predictor: Predictor, items: Sequence[LoadedItem], *, request_id: str, signer: ReceiptSigner | None = None
) -> list[dict[str, Any]]:
    """One result line per item, their usable photos in one model call.

    A line is ``item_id``, ``files``, and ``model``, ``item`` and ``images`` exactly as the API
    answers them, or ``error`` (``code``, ``message``) when a photo cannot be used, as
    ``/v1/score`` answers 422. ``authlens score`` and Ray batch scoring both write these lines.
    """
    good = [p for it in items for p in it.photos if isinstance(p, PreparedImage)]
    raws = iter(predictor.infer(np.stack([p.pixels for p in good])) if good else [])
    raw_of = {id(p): next(raws) for p in good}
    lines = []
    for it in items:
        line: dict[str, Any] = {"item_id": it.item_id, "files": list(it.files)}
        bad = [(f, p) for f, p in zip(it.files, it.photos, strict=True) if isinstance(p, ImageError)]
        if bad:
            f, err = bad[0]
            line["error"] = {"code": err.code, "message": f"{f}: {err.message}"}
        else:
            ok = [p for p in it.photos if isinstance(p, PreparedImage)]
            names = [PurePosixPath(f).name for f in it.files]
            outcome = predictor.outcome(ok, [raw_of[id(p)] for p in ok], names)
            if signer is not None:
                outcome.item.receipt = signer.sign_item(
                    outcome.item, model=predictor.model_ref, request_id=request_id
                )
            line["model"] = predictor.model_ref.model_dump()
            line["item"] = outcome.item.model_dump(mode="json")
            line["images"] = [im.model_dump(mode="json") for im in outcome.images]
        lines.append(line)
    return lines


def dump_line(line: dict[str, Any]) -> str:
    """A result line as written to JSONL (compact, no trailing newline)."""
    return json.dumps(line, separators=(",", ":"))


def score_items(
    predictor: Predictor,
    items: list[OfflineItem],
    out: TextIO,
    *,
    explain: bool = False,
    batch_size: int = 16,
    workers: int = 2,
    signer: ReceiptSigner | None = None,
    progress: Any = None,
) -> Summary:
    """Score items and write one JSON line per item; returns counts for the summary table."""
    summary = Summary()
    t0 = time.perf_counter()
    run_id = f"offline-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for chunk in _chunks(items, batch_size):
            files = [f for it in chunk for f in it.files]
            prepared = list(pool.map(lambda f: load_photo(predictor, f, explain), files))
            loaded, k = [], 0
            for it in chunk:
                loaded.append(
                    LoadedItem(it.item_id, [str(f) for f in it.files], prepared[k : k + len(it.files)])
                )
                k += len(it.files)
            for line in judge_items(predictor, loaded, request_id=run_id, signer=signer):
                summary.add(line)
                out.write(dump_line(line) + "\n")
            if progress is not None:
                progress(len(files))
    summary.seconds = time.perf_counter() - t0
    return summary
