"""Multipart bodies read with limits on every part: how many files and fields, how large each
file, text field and part header may be. Every refusal is an :class:`APIError` with a stable
code, raised while the body streams in (the rest is never parsed).

Usage: ``form = await read_form(request, FormLimits(max_files=8, max_fields=16, ...))``
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import FormData, Headers
from starlette.formparsers import MultiPartException, MultiPartParser

from serving.api.errors import APIError

MAX_PART_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class FormLimits:
    """Limits of one route's multipart body.

    Attributes:
        max_files: File parts (one more is ``422 too_many_files``).
        max_fields: Text fields (one more is ``400 bad_request``).
        max_field_bytes: Bytes of one text field.
        max_file_bytes: Bytes of one file part (``413 file_too_large``, while it streams).
        parts: What the body should carry, for the ``415`` message.
    """

    max_files: int
    max_fields: int
    max_field_bytes: int
    max_file_bytes: int
    parts: str = "the photos as `files`"


class _TooManyFiles(MultiPartException):
    pass


class _FileTooLarge(MultiPartException):
    pass


class _BoundedParser(MultiPartParser):
    """Starlette's parser with a size limit on file parts and part headers too."""

    def __init__(self, headers: Headers, stream: AsyncGenerator[bytes, None], limits: FormLimits) -> None:
        super().__init__(
            headers,
            stream,
            max_files=limits.max_files,
            max_fields=limits.max_fields,
            max_part_size=limits.max_field_bytes,
        )
        self.limits = limits
        self._file_bytes = 0
        self._header_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._file_bytes = 0
        self._header_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            self._file_bytes += end - start
            if self._file_bytes > self.limits.max_file_bytes:
                raise _FileTooLarge(
                    f"A file part is larger than {self.limits.max_file_bytes} bytes (max_file_bytes)."
                )
        super().on_part_data(data, start, end)

    def _header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise MultiPartException(f"A part's headers exceed {MAX_PART_HEADER_BYTES} bytes.")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header(end - start)
        super().on_header_field(data, start, end)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header(end - start)
        super().on_header_value(data, start, end)

    def on_headers_finished(self) -> None:
        try:
            super().on_headers_finished()
        except MultiPartException as exc:
            if exc.message.startswith("Too many files"):
                raise _TooManyFiles(exc.message) from None
            raise


async def read_form(request: Request, limits: FormLimits) -> FormData:
    """Parse a ``multipart/form-data`` body within ``limits``.

    Raises:
        APIError: ``415`` for another content type; ``422 too_many_files``; ``413 file_too_large``;
            ``400 bad_request`` for anything malformed or over the other limits.
    """
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "multipart/form-data":
        raise APIError(415, "unsupported_media_type", f"Send multipart/form-data with {limits.parts}.")
    parser = _BoundedParser(request.headers, request.stream(), limits)
    try:
        return await parser.parse()
    except _TooManyFiles:
        raise APIError(422, "too_many_files", f"Send at most {limits.max_files} files in one call.") from None
    except _FileTooLarge as exc:
        raise APIError(413, "file_too_large", exc.message) from None
    except MultiPartException as exc:
        raise APIError(400, "bad_request", f"Malformed multipart body: {exc.message}") from None
    except KeyError:  # no boundary parameter in some starlette versions
        raise APIError(400, "bad_request", "Malformed multipart body: no boundary.") from None
