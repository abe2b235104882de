"""Dataset manifests: one row per photo (format documented in ``datasets/README.md``).

This module's public names are the contract between the data layer and training/evaluation:
:class:`Box`, :class:`Record`, :class:`ManifestError`, :func:`load_manifest`,
:func:`manifest_hash`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "val", "test")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists the first offending rows by line number."""


@dataclass(frozen=True)
class Box:
    """A pixel box ``(x0, y0, x1, y1)`` in the stored image's coordinates, after EXIF orientation.

    ``name`` is a flag name from :data:`model.flags.FLAG_NAMES` or ``product``.
    ``subtlety`` (0..1, synthetic data only) says how hard the tell is to see; ``None`` if unknown.
    """

    name: str
    x0: float
    y0: float
    x1: float
    y1: float
    subtlety: float | None = None


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


def load_manifest(path: str | Path) -> list[Record]:
    """Read a CSV/JSONL manifest, or a folder with ``genuine/`` and ``counterfeit/`` subfolders.

    Relative ``file`` paths are resolved against the manifest's folder. A folder is searched
    for ``manifest.csv`` / ``manifest.jsonl`` first.

    Raises:
        ManifestError: missing files, unknown labels, unknown flags, malformed boxes ...; the
            message lists the first offending rows with their line numbers.
    """
    raise NotImplementedError


def manifest_hash(records: list[Record]) -> str:
    """SHA-256 over the sorted (relative file, label, split, file size) of every record."""
    raise NotImplementedError
