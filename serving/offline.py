"""``authlens score``: the API's predictor over files, folders or a manifest, without a server.

Usage: ``authlens score --bundle bundles/demo photos/ --out results.jsonl``

Each input file is one item unless a manifest gives ``item_id`` or ``--item`` makes all the
given photos one item. An item whose photo cannot be used gets an error line, as ``/v1/score``
answers 422 for it. Results are identical to the API's for the same bytes: same predictor, and
ONNX Runtime's outputs do not depend on the batch an image shares.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
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


MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


def _manifest_rows(path: Path) -> list[tuple[int, dict]]:
    """``(line number, row)`` of a CSV (header row) or JSONL (one object per line) manifest."""
    shape = "a CSV with a `file` column or JSONL objects with a `file` field (optional `item_id`)"
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "file" not in reader.fieldnames:
                raise InputError(f"{path}: a manifest is {shape}.")
            return list(enumerate(reader, start=2))
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {n} is not JSON ({exc.msg}); a manifest is {shape}.") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {n} is not a JSON object; a manifest is {shape}.")
        rows.append((n, {k: "" if v is None else str(v) for k, v in row.items()}))
    return rows


def _read_manifest(path: Path) -> list[OfflineItem]:
    items: dict[str, OfflineItem] = {}
    for n, row in _manifest_rows(path):
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


def _load(predictor: Predictor, path: Path, explain: bool) -> PreparedImage | ImageError:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageError(f"{path}: cannot be read ({exc.strerror}).")
    try:
        return predictor.prepare(data, explain=explain)
    except ImageError as exc:
        return exc


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
            prepared = list(pool.map(lambda f: _load(predictor, f, explain), files))
            good = [p for p in prepared if isinstance(p, PreparedImage)]
            raws = iter(predictor.infer(np.stack([p.pixels for p in good])) if good else [])
            raw_of = {id(p): next(raws) for p in good}
            k = 0
            for it in chunk:
                mine = prepared[k : k + len(it.files)]
                k += len(it.files)
                line: dict[str, Any] = {"item_id": it.item_id, "files": [str(f) for f in it.files]}
                bad = [(f, p) for f, p in zip(it.files, mine, strict=True) if isinstance(p, ImageError)]
                if bad:
                    f, err = bad[0]
                    line["error"] = {"code": err.code, "message": f"{f}: {err.message}"}
                    summary.errors += 1
                else:
                    ok = [p for p in mine if isinstance(p, PreparedImage)]
                    outcome = predictor.outcome(ok, [raw_of[id(p)] for p in ok], [f.name for f in it.files])
                    if signer is not None:
                        outcome.item.receipt = signer.sign_item(
                            outcome.item, model=predictor.model_ref, request_id=run_id
                        )
                    line["model"] = predictor.model_ref.model_dump()
                    line["item"] = outcome.item.model_dump(mode="json")
                    line["images"] = [im.model_dump(mode="json") for im in outcome.images]
                    summary.verdicts[outcome.item.verdict] += 1
                summary.items += 1
                summary.images += len(it.files)
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
            if progress is not None:
                progress(len(files))
    summary.seconds = time.perf_counter() - t0
    return summary
