"""Dataset validation: open every photo, list every problem with its reason, find near-duplicates.

Usage: ``authlens data validate ../shared/data/sneakers-nike --report validate.json [--strict]``

Each photo goes through :func:`model.imaging.decode_image` (the one decoding path serving uses),
so a file that validates here is a file the service can read. Nothing is dropped silently:
rows the manifest cannot use, files that do not decode, files beside the manifest that it does
not list and files a folder manifest does not take as photos are all listed with a reason.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.flags import LABELS
from training.data.dedupe import (
    DUPLICATE_THRESHOLD,
    HASH_DRAFT_SIZE,
    VARIANTS,
    clusters,
    near_duplicate_pairs,
    phash_variants,
)
from training.data.manifest import (
    IMAGE_EXTENSIONS,
    MANIFEST_NAMES,
    ParsedManifest,
    Record,
    manifest_hash,
    parse_manifest,
    relative_name,
)

if TYPE_CHECKING:
    from model.imaging import DecodedImage

MIN_SIDE = 128
"""Photos whose shorter side is below this are listed as small (the service answers them inconclusive)."""

MAX_BALANCE_VALUES = 12
"""Extra columns with 2..this many distinct values get a class-balance table (e.g. sneakers ``model``)."""

_EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".heic": "HEIF",
    ".heif": "HEIF",
}


@dataclass
class ValidationReport:
    """What :func:`validate_dataset` found; :meth:`to_dict` is the JSON report.

    Every list holds dicts naming the ``file`` (relative to the dataset root) and a ``reason``.
    """

    source: str
    root: str
    photos: int
    readable: int
    seconds: float
    manifest_hash: str
    manifest_problems: list[dict[str, Any]] = field(default_factory=list)
    skipped_files: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    converted: list[dict[str, Any]] = field(default_factory=list)
    exif_rotated: list[dict[str, Any]] = field(default_factory=list)
    extension_mismatch: list[dict[str, Any]] = field(default_factory=list)
    small: list[dict[str, Any]] = field(default_factory=list)
    boxes_outside: list[dict[str, Any]] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    balance: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    duplicate_threshold: int = DUPLICATE_THRESHOLD
    duplicate_pairs: int = 0
    duplicate_pairs_between_items: int = 0
    duplicate_clusters: list[dict[str, Any]] = field(default_factory=list)
    cross_split_duplicates: list[dict[str, Any]] = field(default_factory=list)
    items_across_splits: list[dict[str, Any]] = field(default_factory=list)
    label_conflicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def leaks(self) -> int:
        """Duplicate clusters or items found in more than one split."""
        return len(self.cross_split_duplicates) + len(self.items_across_splits)

    @property
    def clean(self) -> bool:
        """No bad manifest row, no unreadable photo, no leak (what ``--strict`` requires)."""
        return not (self.manifest_problems or self.unreadable or self.leaks)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (plain types only)."""
        return {
            "source": self.source,
            "root": self.root,
            "clean": self.clean,
            "summary": {
                "photos": self.photos,
                "readable": self.readable,
                "unreadable": len(self.unreadable),
                "manifest_problems": len(self.manifest_problems),
                "skipped_files": len(self.skipped_files),
                "converted_modes": len(self.converted),
                "exif_rotated": len(self.exif_rotated),
                "extension_mismatch": len(self.extension_mismatch),
                "small": len(self.small),
                "boxes_outside_image": len(self.boxes_outside),
                "duplicate_pairs": self.duplicate_pairs,
                "duplicate_pairs_between_items": self.duplicate_pairs_between_items,
                "duplicate_clusters": len(self.duplicate_clusters),
                "photos_in_duplicate_clusters": sum(len(c["files"]) for c in self.duplicate_clusters),
                "cross_split_duplicates": len(self.cross_split_duplicates),
                "items_across_splits": len(self.items_across_splits),
                "label_conflicts": len(self.label_conflicts),
                "seconds": round(self.seconds, 2),
            },
            "manifest_hash": self.manifest_hash,
            "duplicate_threshold_bits": self.duplicate_threshold,
            "formats": self.formats,
            "modes": self.modes,
            "sizes": self.sizes,
            "balance": self.balance,
            "manifest_problems": self.manifest_problems,
            "skipped_files": self.skipped_files,
            "unreadable": self.unreadable,
            "converted": self.converted,
            "exif_rotated": self.exif_rotated,
            "extension_mismatch": self.extension_mismatch,
            "small": self.small,
            "boxes_outside_image": self.boxes_outside,
            "duplicate_clusters": self.duplicate_clusters,
            "cross_split_duplicates": self.cross_split_duplicates,
            "items_across_splits": self.items_across_splits,
            "label_conflicts": self.label_conflicts,
        }


def _balance(records: list[Record]) -> dict[str, dict[str, dict[str, int]]]:
    """Photos per label for every breakdown worth a table."""

    def table(key: Callable[[Record], str | None]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in records:
            row = out.setdefault(key(r) or "(none)", dict.fromkeys(LABELS, 0))
            row[r.label] += 1

        def order(item: tuple[str, dict[str, int]]) -> tuple[int, float, str]:
            value = item[0]
            try:
                return 0, float(value), value
            except ValueError:
                return 1, 0.0, value

        return dict(sorted(out.items(), key=order))

    result = {"all": table(lambda r: "all")}
    for name, key in (
        ("brand", lambda r: r.brand),
        ("category", lambda r: r.category),
        ("split", lambda r: r.split),
    ):
        if any(key(r) for r in records):
            result[name] = table(key)
    extras = sorted({k for r in records for k in r.extra})
    for column in extras:
        values = {r.extra.get(column) for r in records}
        if 2 <= len(values) <= MAX_BALANCE_VALUES:
            result[column] = table(lambda r, c=column: r.extra.get(c))  # type: ignore[misc]
    return result


def _unlisted(root: Path, listed: set[Path], source: Path) -> list[dict[str, Any]]:
    """Photos under the manifest's folder that the manifest does not name."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and path not in listed:
            out.append({"file": path.relative_to(root).as_posix(), "reason": f"not listed in {source.name}"})
    return out


@dataclass
class _PhotoScan:
    """What opening every photo gathered for the summary and the duplicate search.

    Attributes:
        hashes: ``(N, len(VARIANTS))`` perceptual hashes (zero where unreadable).
        ok: ``(N,)`` which photos decoded.
        digests: SHA-256 of each file's bytes, ``None`` where it could not be read.
        widths, heights: Original sizes of the decoded photos.
        formats, modes: Decoded formats and source modes, counted.
    """

    hashes: np.ndarray
    ok: np.ndarray
    digests: list[str | None]
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)


def validate_dataset(
    path: str | Path,
    *,
    threshold: int = DUPLICATE_THRESHOLD,
    min_side: int = MIN_SIDE,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Open every photo of a dataset and report what is wrong with it.

    Args:
        path: A CSV/JSONL manifest or a dataset folder.
        threshold: Near-duplicate distance in bits (see :mod:`training.data.dedupe`).
        min_side: Shorter sides below this are listed as small.
        progress: Called with ``(done, total)`` after each photo.

    Returns:
        The report; it never raises for a bad photo or a bad row.

    Raises:
        ManifestError: only when the manifest as a whole is unusable (missing, no ``file``
            or ``label`` column, not UTF-8, no rows).
    """
    start = time.perf_counter()
    parsed = parse_manifest(path)
    records = parsed.records
    report = _manifest_report(parsed, threshold)
    names = [relative_name(r, parsed.root) for r in records]
    scan = _scan_photos(report, records, names, min_side, progress)
    report.readable = int(scan.ok.sum())
    report.formats = dict(scan.formats.most_common())
    report.modes = dict(scan.modes.most_common())
    if scan.widths:
        report.sizes = _size_summary(scan.widths, scan.heights)
    report.balance = _balance(records)
    _duplicates(report, records, names, scan.hashes, scan.ok, threshold, scan.digests)
    _item_checks(report, records, names)
    report.seconds = time.perf_counter() - start
    return report


def _manifest_report(parsed: ParsedManifest, threshold: int) -> ValidationReport:
    """A new report holding what the manifest itself says: bad rows, skipped and unlisted files."""
    root = parsed.root
    records = parsed.records
    report = ValidationReport(
        source=str(parsed.source),
        root=str(root),
        photos=len(records),
        readable=0,
        seconds=0.0,
        manifest_hash=manifest_hash(records),
        duplicate_threshold=threshold,
    )
    report.manifest_problems = [{"line": line, "reason": reason} for line, reason in parsed.problems]
    report.skipped_files = [
        {"file": p.relative_to(root).as_posix(), "reason": reason} for p, reason in parsed.skipped
    ]
    if parsed.source.is_file():
        listed = {r.file for r in records} | {root / n for n in MANIFEST_NAMES}
        report.skipped_files += _unlisted(root, listed, parsed.source)
    return report


def _scan_photos(
    report: ValidationReport,
    records: list[Record],
    names: list[str],
    min_side: int,
    progress: Callable[[int, int], None] | None,
) -> _PhotoScan:
    """Decode every photo as serving does, listing unreadable ones and the oddities of the rest."""
    from model.imaging import ImageError, decode_image

    scan = _PhotoScan(
        hashes=np.zeros((len(records), len(VARIANTS)), np.uint64),
        ok=np.zeros(len(records), bool),
        digests=[None] * len(records),
    )
    for k, r in enumerate(records):
        where = {"file": names[k], "line": r.line}
        try:
            data = r.file.read_bytes()
            scan.digests[k] = hashlib.sha256(data).hexdigest()
            decoded = decode_image(data, draft_size=HASH_DRAFT_SIZE)
        except ImageError as exc:
            report.unreadable.append({**where, "code": exc.code, "reason": exc.message})
        except OSError as exc:
            report.unreadable.append({**where, "code": "unreadable_file", "reason": f"cannot read: {exc}"})
        else:
            scan.ok[k] = True
            scan.hashes[k] = phash_variants(decoded.pixels)
            w, h = decoded.original_size
            scan.widths.append(w)
            scan.heights.append(h)
            scan.formats[decoded.format] += 1
            scan.modes[decoded.source_mode] += 1
            _check_decoding(report, r, where, decoded)
            _check_geometry(report, r, where, (w, h), min_side)
        if progress is not None:
            progress(k + 1, len(records))
    return scan


def _check_decoding(
    report: ValidationReport, record: Record, where: dict[str, Any], decoded: DecodedImage
) -> None:
    """List a photo converted from another mode, turned by EXIF, or named for another format."""
    if decoded.source_mode != "RGB":
        report.converted.append(
            {
                **where,
                "mode": decoded.source_mode,
                "reason": f"{decoded.source_mode} converted to RGB on decode",
            }
        )
    if decoded.exif_orientation != 1:
        report.exif_rotated.append(
            {
                **where,
                "orientation": decoded.exif_orientation,
                "reason": "EXIF orientation applied on decode; boxes must be in the upright photo's pixels",
            }
        )
    expected = _EXTENSION_FORMATS.get(record.file.suffix.lower())
    if expected is not None and expected != decoded.format:
        report.extension_mismatch.append(
            {
                **where,
                "format": decoded.format,
                "reason": f"named {record.file.suffix} but holds {decoded.format}",
            }
        )


def _check_geometry(
    report: ValidationReport, record: Record, where: dict[str, Any], size: tuple[int, int], min_side: int
) -> None:
    """List a photo smaller than ``min_side`` and boxes reaching outside its ``(width, height)``."""
    w, h = size
    if min(w, h) < min_side:
        report.small.append({**where, "size": [w, h], "reason": f"shorter side {min(w, h)} < {min_side} px"})
    for b in record.boxes:
        if b.x1 > w + 1 or b.y1 > h + 1:
            report.boxes_outside.append(
                {
                    **where,
                    "box": [b.name, b.x0, b.y0, b.x1, b.y1],
                    "reason": f"box {b.name} reaches ({b.x1:g}, {b.y1:g}) outside the {w}x{h} photo",
                }
            )


def _size_summary(widths: list[int], heights: list[int]) -> dict[str, Any]:
    """Smallest, median and largest width and height, and the three most common sizes."""
    w_arr, h_arr = np.array(widths), np.array(heights)
    return {
        "width": {"min": int(w_arr.min()), "median": float(np.median(w_arr)), "max": int(w_arr.max())},
        "height": {"min": int(h_arr.min()), "median": float(np.median(h_arr)), "max": int(h_arr.max())},
        "most_common": [
            f"{w}x{h}" for (w, h), _ in Counter(zip(widths, heights, strict=True)).most_common(3)
        ],
    }


def _duplicates(
    report: ValidationReport,
    records: list[Record],
    names: list[str],
    hashes: np.ndarray,
    ok: np.ndarray,
    threshold: int,
    digests: list[str | None],
) -> None:
    """Count near-duplicate pairs and list their clusters, with those that leak or disagree on labels."""
    pairs = []
    for p in near_duplicate_pairs(hashes, threshold=threshold, mask=ok):
        a, b = records[p.i].item_id, records[p.j].item_id
        same_bytes = digests[p.i] is not None and digests[p.i] == digests[p.j]
        if a is not None and b is not None and a != b and not same_bytes:
            # Two named items: the ids are the stronger statement (as in the split). Photos of
            # similar items in similar poses (the synthetic set's pairs) would otherwise count.
            # The same bytes under two ids are one photo, though: those stay a duplicate.
            report.duplicate_pairs_between_items += 1
        else:
            pairs.append(p)
    report.duplicate_pairs = len(pairs)
    labels = clusters(len(records), pairs)
    worst: dict[int, int] = {}
    for p in pairs:
        g = int(labels[p.i])
        worst[g] = max(worst.get(g, 0), p.distance)
    members: dict[int, list[int]] = {}
    for k, g in enumerate(labels):
        members.setdefault(int(g), []).append(k)
    for g, idx in members.items():
        if len(idx) < 2:
            continue
        cluster = {
            "files": [names[k] for k in idx],
            "lines": [records[k].line for k in idx],
            "labels": [records[k].label for k in idx],
            "splits": [records[k].split for k in idx],
            "item_ids": [records[k].item_id for k in idx],
            "max_distance_bits": worst.get(g, 0),
        }
        report.duplicate_clusters.append(cluster)
        splits = {s for s in cluster["splits"] if s is not None}
        if len(splits) > 1:
            report.cross_split_duplicates.append(
                {**cluster, "reason": f"copies of one photo in splits {', '.join(sorted(splits))}"}
            )
        if len(set(cluster["labels"])) > 1:
            report.label_conflicts.append(
                {**cluster, "reason": "copies of one photo labelled both genuine and counterfeit"}
            )


def _item_checks(report: ValidationReport, records: list[Record], names: list[str]) -> None:
    """List items whose photos sit in more than one split or carry both labels."""
    items: dict[str, list[int]] = {}
    for k, r in enumerate(records):
        if r.item_id is not None:
            items.setdefault(r.item_id, []).append(k)
    for item, idx in sorted(items.items()):
        splits = {records[k].split for k in idx if records[k].split is not None}
        label_set = {records[k].label for k in idx}
        entry = {"item_id": item, "files": [names[k] for k in idx], "lines": [records[k].line for k in idx]}
        if len(splits) > 1:
            report.items_across_splits.append(
                {**entry, "reason": f"item {item} in splits {', '.join(sorted(splits))}"}
            )
        if len(label_set) > 1:
            report.label_conflicts.append(
                {**entry, "reason": f"item {item} labelled both genuine and counterfeit"}
            )
