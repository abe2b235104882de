"""Dataset manifests: one row per photo (format documented in ``datasets/README.md``).

This module's public names are the contract between the data layer and training/evaluation:
:class:`Box`, :class:`Record`, :class:`ManifestError`, :func:`load_manifest`,
:func:`manifest_hash`, :func:`write_manifest`.

Three sources read as a manifest:

* a CSV file (header row; ``file`` and ``label`` required, every other column optional),
* a JSONL file (one JSON object per line, same field names),
* a folder holding ``manifest.csv`` / ``manifest.jsonl``, or else ``genuine/`` and
  ``counterfeit/`` subfolders of images (searched recursively).

What one ``flags`` or ``boxes`` cell means lives in :mod:`training.data.manifest_cells`; its
:class:`Box`, :data:`PRODUCT_BOX` and :data:`NO_FLAGS` are re-exported here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from model.flags import FLAG_INDEX, LABELS
from training.data.manifest_cells import (
    NO_FLAGS,
    PRODUCT_BOX,
    Box,
    format_boxes,
    format_flags,
    parse_box_text,
    parse_boxes,
    parse_flags,
)

__all__ = [
    "BOX_COLUMN_ALIASES",
    "IMAGE_EXTENSIONS",
    "KNOWN_COLUMNS",
    "MANIFEST_NAMES",
    "MAX_LISTED_PROBLEMS",
    "NO_FLAGS",
    "PRODUCT_BOX",
    "SPLITS",
    "Box",
    "ManifestError",
    "ParsedManifest",
    "Record",
    "common_root",
    "format_boxes",
    "format_flags",
    "format_problems",
    "load_manifest",
    "load_manifests",
    "manifest_hash",
    "parse_manifest",
    "relative_name",
    "write_manifest",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
"""File name endings a folder manifest picks up (case-insensitive); other files are not photos."""

MANIFEST_NAMES: tuple[str, ...] = ("manifest.csv", "manifest.jsonl")
"""Looked for, in this order, when a folder is given."""

KNOWN_COLUMNS: tuple[str, ...] = ("file", "label", "item_id", "brand", "category", "split", "flags", "boxes")
"""Columns read into :class:`Record` fields, in the order :func:`write_manifest` writes them."""

BOX_COLUMN_ALIASES: dict[str, str] = {"product_boxes_xyxy": PRODUCT_BOX}
"""Extra columns of ``;``-separated ``x0 y0 x1 y1`` boxes read as boxes of one name (sneakers set)."""

MAX_LISTED_PROBLEMS = 10


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists the first offending rows by line number.

    Attributes:
        problems: Every ``(line, reason)`` found (line 0 = the manifest as a whole or a folder entry).
    """

    def __init__(self, message: str, problems: list[tuple[int, str]] | None = None) -> None:
        super().__init__(message)
        self.problems: list[tuple[int, str]] = list(problems or [])


@dataclass(frozen=True)
class Record:
    """One photo.

    Attributes:
        file: Absolute path of the image.
        label: ``genuine`` or ``counterfeit``.
        item_id: Photos sharing it show one physical item; ``None`` when unknown.
        brand, category: Free text for breakdowns; ``None`` when unknown.
        split: ``train``, ``val``, ``test`` or ``None`` when the manifest has no split.
        flags: Tells present; ``None`` means *not labelled* (the flag loss ignores the photo),
            ``()`` means labelled and none present.
        boxes: Boxes per flag and/or the product.
        extra: Any other columns (e.g. the sneakers set's ``model``), as strings.
        line: Line number in the manifest (1-based, header = line 1), for error messages.
    """

    file: Path
    label: str
    item_id: str | None = None
    brand: str | None = None
    category: str | None = None
    split: str | None = None
    flags: tuple[str, ...] | None = None
    boxes: tuple[Box, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass
class ParsedManifest:
    """What :func:`parse_manifest` read, problems included (nothing is raised for a bad row).

    Attributes:
        source: The manifest file, or the folder for a folder manifest.
        root: Folder relative ``file`` paths are resolved against.
        records: Rows that parsed (a row whose file is missing is kept here when ``check_files``
            is false, and left out with a problem otherwise).
        problems: ``(line, reason)`` for every bad row or folder entry.
        skipped: ``(path, reason)`` for files in a folder manifest that were not taken as photos.
    """

    source: Path
    root: Path
    records: list[Record]
    problems: list[tuple[int, str]]
    skipped: list[tuple[Path, str]]


def _opt(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _resolve(root: Path, file: str) -> Path:
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = root / path
    return Path(os.path.normpath(path))


def _record_from_row(row: dict[str, Any], line: int, root: Path) -> tuple[Record | None, list[str]]:
    """Turn one CSV/JSONL row into a Record, or return the reasons it is bad."""
    errors: list[str] = []
    file = _opt(row.get("file"))
    if file is None:
        errors.append("empty 'file'")
    label = (_opt(row.get("label")) or "").lower()
    if label not in LABELS:
        errors.append(f"unknown label {row.get('label')!r} (allowed: {', '.join(LABELS)})")
    split = _opt(row.get("split"))
    if split is not None:
        split = split.lower()
        if split not in SPLITS:
            errors.append(f"unknown split {row.get('split')!r} (allowed: {', '.join(SPLITS)} or empty)")
    flags, flag_errors = parse_flags(row.get("flags"))
    errors += flag_errors
    boxes, box_errors = parse_boxes(row.get("boxes"))
    errors += box_errors
    extra: dict[str, str] = {}
    for key, value in row.items():
        if key is None or key in KNOWN_COLUMNS:
            continue
        if key in BOX_COLUMN_ALIASES:
            text = "" if value is None else str(value)
            got, errs = parse_box_text(text, default_name=BOX_COLUMN_ALIASES[key])
            boxes += got
            errors += [f"column {key!r}: {e}" for e in errs]
            continue
        text = value if isinstance(value, str) or value is None else json.dumps(value)
        if text is not None and text.strip():
            extra[key] = text.strip()
    if label == "genuine" and flags:
        errors.append(f"label 'genuine' but flags {';'.join(flags)} (a genuine photo has no tells)")
    tells = sorted({b.name for b in boxes if b.name != PRODUCT_BOX}, key=FLAG_INDEX.__getitem__)
    if flags is not None and any(t not in flags for t in tells):
        missing = [t for t in tells if t not in flags]
        errors.append(
            f"box for flag(s) {', '.join(missing)} not listed in flags {';'.join(flags) or NO_FLAGS}"
        )
    if errors or file is None:
        return None, errors
    record = Record(
        file=_resolve(root, file),
        label=label,
        item_id=_opt(row.get("item_id")),
        brand=_opt(row.get("brand")),
        category=_opt(row.get("category")),
        split=split,
        flags=flags,
        boxes=tuple(boxes),
        extra=extra,
        line=line,
    )
    return record, []


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip() for f in reader.fieldnames or []]
    missing = [c for c in ("file", "label") if c not in fields]
    if missing:
        raise ManifestError(
            f"{path}: the header lacks column(s) {', '.join(missing)}; it has: {', '.join(fields) or '(empty)'}.",
            [(1, "header")],
        )
    reader.fieldnames = fields
    start = 2
    for row in reader:
        if any((v or "").strip() for k, v in row.items() if k is not None):
            if None in row:
                row = dict(row)
                row["__overflow__"] = row.pop(None)
            yield start, row
        start = reader.line_num + 1


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, {"__error__": f"invalid JSON: {exc.msg} at column {exc.colno}"}
                continue
            if not isinstance(row, dict):
                yield number, {"__error__": f"expected a JSON object, got {type(row).__name__}"}
                continue
            yield number, row


def _scan_folder(folder: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[Path, str]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    skipped: list[tuple[Path, str]] = []
    for label in LABELS:
        for path in sorted((folder / label).rglob("*")):
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append((path, f"not an image file name (allowed: {', '.join(IMAGE_EXTENSIONS)})"))
                continue
            rows.append((0, {"file": str(path.relative_to(folder)), "label": label}))
    return rows, skipped


def _find_source(path: Path) -> tuple[Path, str]:
    """Return ``(manifest file or folder, kind)`` with kind ``csv``, ``jsonl`` or ``folder``."""
    if path.is_dir():
        for name in MANIFEST_NAMES:
            if (path / name).is_file():
                return _find_source(path / name)
        if any((path / label).is_dir() for label in LABELS):
            return path, "folder"
        raise ManifestError(
            f"{path}: a dataset folder needs {' or '.join(MANIFEST_NAMES)}, or {'/ and '.join(LABELS)}/ subfolders."
        )
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file or folder.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return path, "csv"
    if suffix in (".jsonl", ".ndjson"):
        return path, "jsonl"
    raise ManifestError(
        f"{path}: unknown manifest type {suffix or '(none)'!r}; use .csv, .jsonl or a folder."
    )


def parse_manifest(path: str | Path, *, check_files: bool = True) -> ParsedManifest:
    """Read a manifest and collect every problem instead of stopping at the first.

    Args:
        path: A CSV/JSONL manifest or a dataset folder (see module docstring).
        check_files: Report rows whose file does not exist (and leave them out of ``records``).

    Raises:
        ManifestError: only when the manifest as a whole is unusable (missing, unknown type,
            not UTF-8, no ``file``/``label`` columns, no rows).
    """
    path = Path(path).expanduser().absolute()
    source, kind = _find_source(path)
    root = source if kind == "folder" else source.parent
    skipped: list[tuple[Path, str]] = []
    try:
        if kind == "folder":
            rows, skipped = _scan_folder(source)
        elif kind == "csv":
            rows = list(_read_csv(source))
        else:
            rows = list(_read_jsonl(source))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except csv.Error as exc:
        raise ManifestError(f"{source}: malformed CSV: {exc}.") from None
    records: list[Record] = []
    problems: list[tuple[int, str]] = []
    seen: dict[Path, int] = {}
    for line, row in rows:
        if "__error__" in row:
            problems.append((line, str(row["__error__"])))
            continue
        if "__overflow__" in row:
            problems.append((line, f"more cells than header columns: extra {row['__overflow__']!r}"))
            continue
        record, errors = _record_from_row(row, line, root)
        if record is not None:
            if record.file in seen:
                also = f"line {seen[record.file]}" if seen[record.file] else "another row"
                errors.append(f"file {row.get('file')!r} is listed twice (also {also})")
            elif check_files and not record.file.is_file():
                errors.append(f"file {row.get('file')!r} not found (looked for {record.file})")
        if errors or record is None:
            where = line if kind != "folder" else 0
            problems += [(where, e if kind != "folder" else f"{row.get('file')}: {e}") for e in errors]
            continue
        seen[record.file] = line
        records.append(record)
    if not rows:
        raise ManifestError(f"{source}: the manifest has no rows.", [(0, "no rows")])
    if kind == "folder":
        records = [replace(r, line=i) for i, r in enumerate(records, start=1)]
    return ParsedManifest(source=source, root=root, records=records, problems=problems, skipped=skipped)


def format_problems(source: Path, problems: list[tuple[int, str]], limit: int = MAX_LISTED_PROBLEMS) -> str:
    """One message naming how many rows are bad and listing the first ``limit`` of them."""
    lines = sorted({line for line, _ in problems})
    shown = "; ".join(f"line {line}: {reason}" if line else reason for line, reason in problems[:limit])
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    rows = f"{len(lines)} bad row(s)" if any(lines) else f"{len(problems)} problem(s)"
    return f"{source}: {rows}: {shown}{more}."


def load_manifest(path: str | Path) -> list[Record]:
    """Read a CSV/JSONL manifest, or a folder with ``genuine/`` and ``counterfeit/`` subfolders.

    Relative ``file`` paths are resolved against the manifest's folder. A folder is searched
    for ``manifest.csv`` / ``manifest.jsonl`` first.

    Raises:
        ManifestError: missing files, unknown labels, unknown flags, malformed boxes ...; the
            message lists the first offending rows with their line numbers.
    """
    parsed = parse_manifest(path)
    if parsed.problems:
        raise ManifestError(format_problems(parsed.source, parsed.problems), parsed.problems)
    return parsed.records


def load_manifests(path: str | Path, extra: Iterable[str | Path] = ()) -> list[Record]:
    """:func:`load_manifest` of ``path`` and of every ``extra`` manifest (e.g. reviewed decisions
    from ``authlens data export-reviews``), one list.

    Raises:
        ManifestError: any manifest's problems, or a photo listed by two manifests.
    """
    records = load_manifest(path)
    seen = {r.file.resolve(): path for r in records}
    for other in extra:
        more = load_manifest(other)
        for r in more:
            first = seen.setdefault(r.file.resolve(), other)
            if first != other:
                raise ManifestError(f"{other}: {r.file} is also listed by {first}; list each photo once.")
        records.extend(more)
    return records


def common_root(records: Iterable[Record]) -> Path:
    """The deepest folder holding every record's file (``/`` for no records)."""
    parents = [str(r.file.parent) for r in records]
    return Path(os.path.commonpath(parents)) if parents else Path("/")


def relative_name(record: Record, root: Path) -> str:
    """``record.file`` relative to ``root`` with ``/`` separators (the stable name used in hashes)."""
    return Path(os.path.relpath(record.file, root)).as_posix()


def manifest_hash(records: list[Record]) -> str:
    """SHA-256 over the sorted (relative file, label, split, file size) of every record.

    Files are named relative to the deepest folder holding them all, so the hash does not
    depend on where the dataset lives on disk; a file that no longer exists counts as size -1.
    """
    root = common_root(records)
    rows = []
    for r in records:
        try:
            size = r.file.stat().st_size
        except OSError:
            size = -1
        rows.append((relative_name(r, root), r.label, r.split or "", size))
    digest = hashlib.sha256()
    for name, label, split, size in sorted(rows):
        digest.update(f"{name}\t{label}\t{split}\t{size}\n".encode())
    return digest.hexdigest()


def write_manifest(records: list[Record], path: str | Path) -> Path:
    """Write records as a manifest that :func:`load_manifest` reads back to the same records.

    ``.jsonl`` writes JSON lines; anything else writes CSV. ``file`` paths are written relative
    to the manifest's folder (with ``..`` where needed); ``extra`` columns follow the known ones
    in order of first appearance.

    Args:
        records: Rows to write.
        path: Destination; its folder is created.

    Returns:
        The path written.
    """
    path = Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    extra_columns: list[str] = []
    for r in records:
        extra_columns += [k for k in r.extra if k not in extra_columns and k not in KNOWN_COLUMNS]
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "file": Path(os.path.relpath(r.file, path.parent)).as_posix(),
            "label": r.label,
            "item_id": r.item_id or "",
            "brand": r.brand or "",
            "category": r.category or "",
            "split": r.split or "",
            "flags": format_flags(r.flags),
            "boxes": format_boxes(r.boxes),
        }
        row.update({k: r.extra.get(k, "") for k in extra_columns})
        rows.append(row)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                out = {k: v for k, v in row.items() if v != "" or k in ("file", "label")}
                fh.write(json.dumps(out, ensure_ascii=False) + "\n")
    else:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=[*KNOWN_COLUMNS, *extra_columns], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    tmp.replace(path)
    return path
