"""Decoding hostile photos: malformed EXIF orientation tags, broken HEVC streams, and the generated
corpus of ``tests/hostile/images.py`` (outcome, time and memory per file), with only the sniffed
container's Pillow plugin reachable."""

from __future__ import annotations

import io
import re
import struct
import time
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hostile import memprobe
from hostile.images import Case, Decoded, Refused, by_name, cases, encode, noise
from PIL import Image

import model.imaging as imaging
from model.imaging import (
    MAX_JPEG_SCANS,
    OUTPUT_BYTES,
    STRIP_BYTES_PER_PIXEL,
    STRIP_PIXELS,
    SUPPORTED_FORMATS,
    CorruptImageError,
    DecodedImage,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UnsupportedFormatError,
    decode_image,
    sniff_format,
)


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


# the generated corpus (tests/hostile/images.py, shared with the HTTP tests) ----------------------
CASES = cases()
MiB = 2**20
SECONDS = 5.0  # per file, on a loaded 2-core machine; the slowest (16 MP bombs) take about 0.3 s
HEADER_ALLOWANCE = 6 * MiB  # before any reservation: PNG text (4 MiB) and ICC chunks, EXIF parsing


def _traced_bound(case: Case, pixels: int) -> int:
    """What numpy and Python may hold: the output, WebP's frame bytes, a strip, copies of the file."""
    frame = 4 * pixels if isinstance(case.expect, Decoded) and case.expect.format == "WEBP" else 0
    return (
        OUTPUT_BYTES * pixels
        + frame
        + STRIP_PIXELS * STRIP_BYTES_PER_PIXEL
        + 3 * len(case.data)
        + HEADER_ALLOWANCE
    )


def test_the_corpus_covers_every_group_and_outcome() -> None:
    groups = {c.group for c in CASES}
    assert len(CASES) >= 30
    assert groups >= {
        "mode",
        "bomb",
        "truncated",
        "corrupt",
        "exif",
        "icc",
        "animated",
        "polyglot",
        "tiny",
        "format",
    }
    assert {c.expect.error for c in CASES if isinstance(c.expect, Refused)} >= {
        EmptyImageError,
        UnsupportedFormatError,
        CorruptImageError,
        ImageTooLargeError,
    }
    assert {c.expect.orientation for c in CASES if isinstance(c.expect, Decoded)} == set(range(1, 9))
    assert max(len(c.data) for c in CASES) < 2**20  # each fits the HTTP tests' 2 MiB file limit


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # the malformed EXIF cases
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_file_outcome_time_and_memory(case: Case) -> None:
    tracemalloc.start()
    t = time.perf_counter()
    try:
        result: DecodedImage | ImageError = decode_image(case.data)
    except ImageError as exc:
        result = exc
    finally:
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    expect = case.expect
    if isinstance(expect, Decoded):
        assert isinstance(result, DecodedImage), result
        w, h = expect.size
        assert result.original_size == expect.size and result.pixels.shape == (h, w, 3)
        assert result.pixels.dtype == np.uint8 and result.pixels.flags.c_contiguous
        assert (result.format, result.source_mode, result.exif_orientation) == (
            expect.format,
            expect.mode,
            expect.orientation,
        )
        pixels = w * h
    else:
        assert type(result) is expect.error, result
        assert result.code == expect.code and re.search(expect.match, result.message), result.message
        assert "Traceback" not in result.message and "<_io." not in result.message
        pixels = 0
    assert seconds < SECONDS, f"{seconds:.2f} s"
    assert peak <= _traced_bound(case, pixels), f"traced peak {peak / MiB:.1f} MiB"


@pytest.fixture(scope="module")
def corpus_rss() -> dict[str, dict[str, Any]]:
    return memprobe.probe("corpus")  # type: ignore[no-any-return]


@pytest.mark.skipif(not memprobe.available(), reason="peak RSS needs Linux /proc/self/clear_refs")
def test_peak_rss_of_every_case_stays_within_what_it_reserved(corpus_rss: dict[str, dict[str, Any]]) -> None:
    """Resident memory (Pillow's image, the C decoders' buffers, numpy) in a fresh process: each
    case's peak is at most what decoding reserved from the budget, plus the header stage."""
    assert set(corpus_rss) == {c.name for c in CASES}
    for case in CASES:
        row = corpus_rss[case.name]
        expected = "decoded" if isinstance(case.expect, Decoded) else case.expect.code
        assert row["outcome"] == expected, (case.name, row)
        bound = row["charged"] + 3 * len(case.data) + HEADER_ALLOWANCE
        assert row["peak"] <= bound, f"{case.name}: {row['peak'] / MiB:.1f} MiB > {bound / MiB:.1f} MiB"


# only the sniffed container's Pillow plugin is ever reached --------------------------------------
READABLE_ELSEWHERE = ["GIF", "BMP", "TIFF", "TGA", "ICO", "QOI", "PPM", "PCX", "SGI", "DDS"]


@pytest.mark.parametrize("fmt", READABLE_ELSEWHERE)
def test_no_other_pillow_plugin_is_reached_even_when_sniffing_is_fooled(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(noise(40, 30), fmt)
    with Image.open(io.BytesIO(data)) as img:  # Pillow, unrestricted, would parse it
        img.load()
    with pytest.raises(UnsupportedFormatError):
        decode_image(data)
    for claimed in SUPPORTED_FORMATS:
        monkeypatch.setattr(imaging, "sniff_format", lambda _data, c=claimed: c)
        with pytest.raises(CorruptImageError, match=claimed):
            decode_image(data)


def test_every_accepted_container_maps_to_its_own_plugins_only() -> None:
    assert set(imaging._PILLOW_FORMATS) == set(SUPPORTED_FORMATS)
    assert imaging._PILLOW_FORMATS == {
        "JPEG": ("JPEG",),
        "PNG": ("PNG",),
        "WEBP": ("WEBP",),
        "HEIF": ("HEIF", "AVIF"),
    }


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("psd-refused", "PSD"),
        ("tga-refused", None),
        ("ico-refused", "ICO"),
        ("eps-refused", "EPS"),
        ("pdf-refused", "PDF"),
        ("tiff-refused", "TIFF"),
        ("gif-refused", "GIF"),
        ("gif-plus-zip", "GIF"),
        ("pdf-with-jpeg", "PDF"),
    ],
)
def test_refused_containers_are_named(name: str, fmt: str | None) -> None:
    data = by_name()[name].data
    assert sniff_format(data) == fmt
    with pytest.raises(UnsupportedFormatError) as info:
        decode_image(data)
    assert info.value.code == "unsupported_format"
    assert "Supported formats: JPEG, PNG, WEBP, HEIF." in info.value.message
    assert (f"{fmt} images are not accepted" if fmt else "Not a recognised image") in info.value.message


def test_a_jpeg_with_more_scans_than_allowed_is_refused_quickly() -> None:
    from hostile.images import jpeg_scan_bomb

    data = jpeg_scan_bomb(MAX_JPEG_SCANS)  # about 10 scans of its own, plus these
    t = time.perf_counter()
    with pytest.raises(CorruptImageError, match=rf"at most {MAX_JPEG_SCANS}"):
        decode_image(data)
    assert time.perf_counter() - t < 1
    assert decode_image(jpeg_scan_bomb(MAX_JPEG_SCANS - 20)).pixels.shape == (96, 128, 3)
