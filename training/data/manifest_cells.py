"""The ``flags`` and ``boxes`` cells of a dataset manifest: parsing them and writing them back.

:mod:`training.data.manifest` reads and writes whole manifests; this module holds what one cell
means. :class:`Box`, :data:`PRODUCT_BOX` and :data:`NO_FLAGS` are re-exported there, which is
where the rest of the project imports them from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from model.flags import FLAG_INDEX, FLAG_NAMES

PRODUCT_BOX = "product"
"""Box name for the product itself (not a tell)."""

NO_FLAGS = "none"
"""``flags`` cell meaning *labelled, no tells*; an empty cell means *not labelled*."""


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


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def parse_flags(value: Any) -> tuple[tuple[str, ...] | None, list[str]]:
    """Parse a ``flags`` cell: ``None``/empty → not labelled; ``none`` → labelled, none; else names.

    Args:
        value: The cell: ``;``-separated flag names, or a list of them (JSONL).

    Returns:
        ``(flags in FLAGS order without repeats, or None; error messages)``.
    """
    if value is None:
        return None, []
    if isinstance(value, list | tuple):
        names = [str(v).strip() for v in value]
    else:
        text = str(value).strip()
        if not text:
            return None, []
        if text.lower() == NO_FLAGS:
            return (), []
        names = [part.strip() for part in text.split(";")]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in FLAG_INDEX]
    if unknown:
        return None, [f"unknown flag(s) {', '.join(map(repr, unknown))} (known: {', '.join(FLAG_NAMES)})"]
    return tuple(sorted(set(names), key=FLAG_INDEX.__getitem__)), []


def _make_box(name: str, coords: list[float], subtlety: float | None) -> tuple[Box | None, str | None]:
    if name != PRODUCT_BOX and name not in FLAG_INDEX:
        return None, f"box name {name!r} is neither {PRODUCT_BOX!r} nor a flag ({', '.join(FLAG_NAMES)})"
    if len(coords) != 4:
        return None, f"box {name!r} needs 4 numbers x0 y0 x1 y1, got {len(coords)}"
    x0, y0, x1, y1 = coords
    if min(coords) < 0 or x1 <= x0 or y1 <= y0:
        return None, f"box {name!r} {x0:g} {y0:g} {x1:g} {y1:g} must have 0 <= x0 < x1 and 0 <= y0 < y1"
    if subtlety is not None and not 0.0 <= subtlety <= 1.0:
        return None, f"box {name!r} subtlety {subtlety:g} is outside 0..1"
    return Box(name, x0, y0, x1, y1, subtlety), None


def parse_box_text(text: str, default_name: str | None = None) -> tuple[list[Box], list[str]]:
    """Parse ``name x0 y0 x1 y1 [subtlety]`` entries separated by ``;``.

    Args:
        text: The cell.
        default_name: When given, the entries are bare ``x0 y0 x1 y1`` boxes of this name (the
            sneakers set's column).

    Returns:
        ``(boxes that parsed, error messages)``.
    """
    boxes: list[Box] = []
    errors: list[str] = []
    for entry in text.split(";"):
        tokens = entry.replace(",", " ").split()
        if not tokens:
            continue
        if default_name is not None:
            name, numbers = default_name, tokens
        else:
            name, numbers = tokens[0], tokens[1:]
        try:
            values = [_number(t) for t in numbers]
        except ValueError as exc:
            errors.append(f"malformed box {entry.strip()!r}: {exc}")
            continue
        subtlety = None
        if default_name is None and len(values) == 5:
            subtlety = values.pop()
        box, error = _make_box(name, values, subtlety)
        if error:
            errors.append(f"malformed box {entry.strip()!r}: {error}")
        elif box is not None:
            boxes.append(box)
    return boxes, errors


def parse_boxes(value: Any) -> tuple[list[Box], list[str]]:
    """Parse a ``boxes`` cell: a string (see :func:`parse_box_text`) or a JSONL list.

    Args:
        value: ``None``, a string, or a list of strings and ``{"name", "box", "subtlety"?}`` dicts.

    Returns:
        ``(boxes that parsed, error messages)``.
    """
    if value is None:
        return [], []
    if isinstance(value, str):
        return parse_box_text(value)
    if not isinstance(value, list):
        return [], [f"boxes must be a list or a string, got {type(value).__name__}"]
    boxes: list[Box] = []
    errors: list[str] = []
    for item in value:
        if isinstance(item, str):
            got, errs = parse_box_text(item)
            boxes += got
            errors += errs
            continue
        if not isinstance(item, dict) or "name" not in item or "box" not in item:
            errors.append(f"malformed box {item!r}: expected {{'name': ..., 'box': [x0, y0, x1, y1]}}")
            continue
        try:
            coords = [_number(str(v)) for v in item["box"]]
            subtlety = None if item.get("subtlety") is None else _number(str(item["subtlety"]))
        except (TypeError, ValueError) as exc:
            errors.append(f"malformed box {item!r}: {exc}")
            continue
        box, error = _make_box(str(item["name"]), coords, subtlety)
        if error:
            errors.append(f"malformed box {item!r}: {error}")
        elif box is not None:
            boxes.append(box)
    return boxes, errors


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(round(float(value), 3))


def format_boxes(boxes: Iterable[Box]) -> str:
    """``name x0 y0 x1 y1 [subtlety]`` entries joined by ``;`` (the CSV ``boxes`` cell)."""
    parts = []
    for b in boxes:
        coords = " ".join(_fmt_number(v) for v in (b.x0, b.y0, b.x1, b.y1))
        tail = "" if b.subtlety is None else f" {_fmt_number(b.subtlety)}"
        parts.append(f"{b.name} {coords}{tail}")
    return ";".join(parts)


def format_flags(flags: tuple[str, ...] | None) -> str:
    """The CSV ``flags`` cell: empty = not labelled, ``none`` = labelled without tells."""
    if flags is None:
        return ""
    return ";".join(flags) if flags else NO_FLAGS
