"""What a batch run reads: local paths or URIs (pyarrow's filesystems), sorted into items and dumps.

Folders, photo files, CSV/JSONL manifests and Parquet dumps of photo references are listed on
the driver (paths only, never photo bytes) by the rules of :func:`serving.offline.collect`, so an
item is named as ``authlens score`` names it. Parquet dumps that carry photo bytes are left for
the workers to read (:class:`Dump`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from serving.core.config import MAX_PHOTOS_PER_ITEM
from serving.offline import IMAGE_SUFFIXES, MANIFEST_SUFFIXES, InputError, collect, manifest_rows

DUMP_SHAPES = (
    "a Parquet dump has one row per photo with `file` (a path or URI, relative to the dump) and "
    "optionally `item_id`; or with `image` (the photo's bytes), `file` (its name) and optionally "
    "`item_id`; or one row per item with `item_id`, `files` (names) and `images` (bytes)"
)


def is_uri(path: str) -> bool:
    """Whether ``path`` names a filesystem by scheme (``s3://bucket/key``, ``file:///tmp/x``)."""
    return "://" in path


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for a local path or a URI, and the path within it.

    Raises:
        InputError: a scheme pyarrow does not know, or a filesystem it cannot reach.
    """
    if not is_uri(path):
        return pafs.LocalFileSystem(), os.path.abspath(path)
    try:
        return pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: {exc}") from None


def join(base: str, rel: str) -> str:
    """``rel`` (a path or URI) relative to the folder ``base`` (a path or URI); local paths resolved."""
    if is_uri(rel) or rel.startswith("/"):
        return rel
    if is_uri(base):
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, rel))}"
    return str((Path(base) / rel).resolve())


def listing(path: str) -> list[str]:
    """Files under a folder (recursively, sorted), named like ``path`` (URIs stay URIs); ``[path]`` for a file.

    Raises:
        InputError: nothing at ``path``.
    """
    fs, root = filesystem(path)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{path}: no such file or folder.")
        if info.type != pafs.FileType.Directory:
            return [path]
        found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except OSError as exc:  # an object store that refuses (credentials, network)
        raise InputError(f"{path}: cannot be listed ({exc}).") from None
    base = path.rstrip("/")
    rels = sorted(posixpath.relpath(f.path, root) for f in found if f.type == pafs.FileType.File)
    return [f"{base}/{rel}" for rel in rels]


@dataclass
class Item:
    """An item listed on the driver: its id and its photos' paths (as given) or URIs."""

    item_id: str
    files: list[str]


@dataclass
class Dump:
    """Parquet files that carry photo bytes, read by the workers.

    ``per_item``: one row per item (``item_id``, ``files``, ``images``); otherwise one row per
    photo (``image``, ``file``), grouped into items by ``item_id`` when the dump has it.
    """

    files: list[str]
    columns: list[str]
    per_item: bool

    @property
    def grouped(self) -> bool:
        return not self.per_item and "item_id" in self.columns


@dataclass
class Inputs:
    """What a run scores: items listed on the driver, and dumps of bytes the workers read."""

    items: list[Item]
    dumps: list[Dump]


def _group(rows: Sequence[tuple[str, str]], items: dict[str, Item]) -> None:
    """Add ``(item_id or "", file)`` rows to ``items``: an empty id makes the photo its own item."""
    for item_id, file in rows:
        key = item_id or file
        items.setdefault(key, Item(key, [])).files.append(file)


def _manifest_items(path: str) -> list[Item]:
    """A CSV/JSONL manifest read through pyarrow's filesystems (paths relative to its folder)."""
    fs, inner = filesystem(path)
    try:
        with fs.open_input_stream(inner) as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc}).") from None
    rows = []
    for n, row in manifest_rows(text, name=path):
        rel = (row.get("file") or "").strip()
        if not rel:
            raise InputError(f"{path}: line {n} has an empty `file`.")
        rows.append(((row.get("item_id") or "").strip(), join(posixpath.dirname(path), rel)))
    items: dict[str, Item] = {}
    _group(rows, items)
    return list(items.values())


def _uri_items(paths: Sequence[str]) -> list[Item]:
    """Items of URIs (folders, photos, manifests) by :func:`serving.offline.collect`'s rules."""
    items: list[Item] = []
    for path in paths:
        if path.lower().endswith(MANIFEST_SUFFIXES):
            items.extend(_manifest_items(path))
            continue
        files = listing(path)
        if files != [path]:  # a folder: its photos, by suffix
            files = [f for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
        items.extend(Item(f, [f]) for f in files)
    return items


def _parquet_files(path: str) -> list[str]:
    """The Parquet files of a dump argument, or ``[]`` when it is no dump (a photo, a photo folder).

    Raises:
        InputError: a ``.parquet`` path with nothing there.
    """
    fs, inner = filesystem(path)
    try:
        kind = fs.get_file_info(inner).type
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc}).") from None
    if path.lower().endswith(".parquet"):
        if kind == pafs.FileType.NotFound:
            raise InputError(f"{path}: no such file or folder.")
        return [path]
    if kind != pafs.FileType.Directory:
        return []
    return [f for f in listing(path) if f.lower().endswith(".parquet")]


def _read_dump(path: str, files: list[str]) -> Dump | list[Item]:
    """A dump of bytes (for the workers), or the items of a dump of references (read here)."""
    fs, inner = filesystem(files[0])
    names = pq.read_schema(inner, filesystem=fs).names
    if {"item_id", "files", "images"} <= set(names):
        return Dump(files, ["item_id", "files", "images"], per_item=True)
    if "file" not in names:
        raise InputError(f"{files[0]}: {DUMP_SHAPES}; it has {', '.join(names)}.")
    if "image" in names:
        return Dump(files, [c for c in ("item_id", "file", "image") if c in names], per_item=False)
    base = path if files != [path] else posixpath.dirname(path)
    items: dict[str, Item] = {}
    for f in files:
        fs, inner = filesystem(f)
        table = pq.read_table(inner, columns=[c for c in ("item_id", "file") if c in names], filesystem=fs)
        ids = table.column("item_id") if "item_id" in names else pa.nulls(table.num_rows, pa.string())
        _group(
            [
                (i or "", join(base, file))
                for i, file in zip(ids.to_pylist(), table.column("file").to_pylist(), strict=True)
            ],
            items,
        )
    return list(items.values())


def plan_inputs(paths: Sequence[str], *, one_item: bool = False) -> Inputs:
    """Sort the given paths into items listed here and dumps of bytes for the workers.

    Raises:
        InputError: a missing path, nothing to score, an item over 8 photos, ``--item`` with a dump
            of bytes, or a Parquet file of another shape.
    """
    items: list[Item] = []
    dumps: list[Dump] = []
    rest: list[str] = []
    for p in paths:
        path = p if is_uri(p) else os.path.abspath(p)
        files = _parquet_files(path)
        if not files:
            rest.append(p)
            continue
        found = _read_dump(path, files)
        if isinstance(found, Dump):
            dumps.append(found)
        else:
            items.extend(found)
    local = [Path(p) for p in rest if not is_uri(p)]
    items += [Item(it.item_id, [str(f) for f in it.files]) for it in (collect(local) if local else [])]
    items += _uri_items([p for p in rest if is_uri(p)])
    if one_item:
        if dumps:
            raise InputError("--item groups photos and manifests; a dump of bytes groups them by item_id.")
        items = [Item("item", [f for it in items for f in it.files])]
    for it in items:
        if len(it.files) > MAX_PHOTOS_PER_ITEM:
            raise InputError(
                f"Item {it.item_id!r} has {len(it.files)} photos; an item has at most {MAX_PHOTOS_PER_ITEM}."
            )
    if not dumps and not any(it.files for it in items):
        raise InputError("No photos found in the given paths (looked for " + ", ".join(IMAGE_SUFFIXES) + ").")
    return Inputs(items, dumps)
