"""Decoding hostile photos: malformed EXIF orientation tags and broken HEVC streams."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from model.imaging import CorruptImageError, decode_image


def _jpeg_with_orientation_entry(
    kind: int, count: int, value: bytes, size: tuple[int, int] = (96, 64)
) -> bytes:
    """A JPEG whose EXIF orientation entry has TIFF type ``kind`` (2 text, 5 rational, 7 bytes ...)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, kind, count) + value + struct.pack("<I", 0)
    extra = struct.pack("<II", 6, 1) if kind == 5 else b""  # a rational's value lives after the IFD
    exif = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + extra
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "count", "value", "orientation"),
    [
        (2, 2, b"6\0\0\0", 1),  # text "6": Pillow does not turn the pixels, so neither may the size
        (7, 4, b"\x06\0\0\0", 1),  # bytes: used to raise ValueError (photo refused as corrupt)
        (4, 1, struct.pack("<I", 2**31), 1),  # out of range
        (5, 1, struct.pack("<I", 26), 6),  # rational 6/1 equals 6: Pillow turns the pixels
        (11, 1, struct.pack("<f", 6.0), 6),  # float 6.0 likewise
    ],
    ids=["text", "bytes", "out-of-range", "rational", "float"],
)
def test_malformed_orientation_tags_keep_size_and_pixels_consistent(
    kind: int, count: int, value: bytes, orientation: int
) -> None:
    decoded = decode_image(_jpeg_with_orientation_entry(kind, count, value))
    h, w = decoded.pixels.shape[:2]
    assert decoded.exif_orientation == orientation
    assert decoded.original_size == (w, h) == ((64, 96) if orientation == 6 else (96, 64))


def test_heic_with_a_broken_stream_is_corrupt_not_eof() -> None:
    """pillow-heif raises EOFError (not OSError) when an HEVC stream ends early."""
    import pillow_heif

    pixels = np.random.default_rng(1).integers(0, 255, (80, 96, 3), dtype=np.uint8)
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(buf, quality=50)
    data = buf.getvalue()
    at = data.find(b"mdat") - 4
    with pytest.raises(CorruptImageError, match="could not be decoded"):
        decode_image(data[:at] + b"\0" * 8 + data[at:])


def test_unidentifiable_header_message_names_the_problem() -> None:
    with pytest.raises(CorruptImageError) as info:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 8)
    assert "header is broken or truncated" in info.value.message and "0x" not in info.value.message
