"""Strict I-JSON (RFC 7493) parsing, and a batch body read without parsing more than it may hold.

Python's ``json`` accepts what I-JSON forbids and what a signature checker must not: duplicate
keys (the last one silently wins, so two readers can see two documents), ``NaN`` and
``Infinity``, integers beyond 2**53, lone surrogates (text that cannot be re-encoded), any
depth. :func:`loads` refuses all of them, naming where.

:func:`read_batch_images` reads ``{"images": [...]}`` entry by entry with the C scanner and
stops at the first entry beyond the limit: a body of millions of tiny entries is refused after
parsing ``limit + 1`` of them, in microseconds and without building the list.

Usage: ``loads(text)``, ``read_batch_images(body, limit=64)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 64
_WS = re.compile(r"[ \t\n\r]*")


class IJSONError(ValueError):
    """Not strict I-JSON, or not the expected shape; the message says where."""


class TooManyEntries(IJSONError):
    """More array entries than allowed (found while reading, before the rest is parsed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} entries")
        self.limit = limit


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise IJSONError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise IJSONError(f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text) > 17 or abs(value := int(text)) > MAX_SAFE_INT:
        raise IJSONError(f"integer {text[:24]} is beyond +-2**53 (I-JSON)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise IJSONError(f"number {text[:24]} overflows a double")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_constant=_constant, parse_int=_int, parse_float=_float, strict=True
)


def check_tree(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse lone surrogates in strings and keys, and nesting deeper than ``max_depth``."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise IJSONError(f"nested deeper than {max_depth} levels")
        if isinstance(node, str):
            _check_text(node)
        elif isinstance(node, dict):
            for key, child in node.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise IJSONError("a string holds a lone surrogate (not Unicode text)") from None


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    if data.startswith(b"\xef\xbb\xbf"):
        raise IJSONError("a byte-order mark is not allowed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IJSONError(f"not UTF-8 at byte {exc.start}") from None


def _value(text: str, at: int, max_depth: int) -> tuple[Any, int]:
    try:
        value, end = _DECODER.raw_decode(text, at)
    except json.JSONDecodeError as exc:
        raise IJSONError(f"{exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise IJSONError(f"nested deeper than {max_depth} levels") from None
    check_tree(value, max_depth)
    return value, end


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one strict I-JSON document.

    Raises:
        IJSONError: invalid JSON, or JSON that I-JSON forbids.
    """
    text = _decode(data)
    value, end = _value(text, _WS.match(text, 0).end(), max_depth)  # type: ignore[union-attr]
    if _WS.match(text, end).end() != len(text):  # type: ignore[union-attr]
        raise IJSONError(f"extra data at character {end}")
    return value


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def skip(self) -> str:
        self.at = _WS.match(self.text, self.at).end()  # type: ignore[union-attr]
        return self.text[self.at : self.at + 1]

    def expect(self, char: str, what: str) -> None:
        if self.skip() != char:
            found = self.text[self.at : self.at + 10] or "the end"
            raise IJSONError(f"expected {what} at character {self.at}, found {found!r}")
        self.at += 1


def read_batch_images(
    data: bytes | str,
    *,
    limit: int,
    max_depth: int = MAX_DEPTH,
    check_entry: Callable[[Any], None] | None = None,
) -> list[Any]:
    """The ``images`` array of a ``{"images": [...]}`` body, read entry by entry.

    Args:
        data: The body.
        limit: Most entries; one more raises :class:`TooManyEntries` without parsing the rest.
        max_depth: Deepest nesting inside an entry.
        check_entry: Called on each entry as it is read (to refuse early).

    Raises:
        TooManyEntries: more than ``limit`` entries.
        IJSONError: anything else that is not a strict I-JSON object with exactly ``images``.
    """
    c = _Cursor(_decode(data))
    c.expect("{", "an object")
    images: list[Any] | None = None
    first = True
    while True:
        if c.skip() == "}" and first:
            c.at += 1
            break
        if c.skip() != '"':
            raise IJSONError(f"expected a key at character {c.at}")
        key, c.at = _value(c.text, c.at, max_depth)
        if key != "images":
            raise IJSONError(f"unknown key {key[:60]!r}; the body holds only `images`")
        if images is not None:
            raise IJSONError("duplicate key 'images'")
        c.expect(":", "':'")
        c.expect("[", "an array for `images`")
        images = []
        if c.skip() == "]":
            c.at += 1
        else:
            while True:
                c.skip()
                entry, c.at = _value(c.text, c.at, max_depth)
                images.append(entry)
                if len(images) > limit:
                    raise TooManyEntries(limit)
                if check_entry is not None:
                    check_entry(entry)
                if c.skip() == ",":
                    c.at += 1
                    continue
                c.expect("]", "',' or ']'")
                break
        first = False
        if c.skip() == ",":
            c.at += 1
            continue
        c.expect("}", "',' or '}'")
        break
    if c.skip():
        raise IJSONError(f"extra data at character {c.at}")
    if images is None:
        raise IJSONError("`images` is missing")
    return images
