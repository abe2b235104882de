"""Decoding's memory is bounded by design: the same pixels as before, at a stated cost per pixel.

Pixels: the strip-wise conversion equals the former whole-image one for every Pillow mode, and the
rotated-view orientation equals Pillow's ``exif_transpose``. Memory: tracemalloc (numpy and
Python) in process, and peak resident memory in a fresh process (Pillow's image and the C decoders'
buffers are invisible to tracemalloc), against :func:`model.imaging.bytes_per_pixel` and what
:func:`model.imaging.decode_image` reserves from its budget.
"""

from __future__ import annotations

import io
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hostile import memprobe
from PIL import Image, ImageOps

from model.imaging import (
    FIXED_DECODE_BYTES,
    OUTPUT_BYTES,
    STRIP_BYTES_PER_PIXEL,
    STRIP_PIXELS,
    bytes_per_pixel,
    decode_image,
    to_rgb_array,
)

MiB = 2**20
needs_proc = pytest.mark.skipif(not memprobe.available(), reason="peak RSS needs Linux /proc/self/clear_refs")
STRIP_ALLOWANCE = STRIP_PIXELS * STRIP_BYTES_PER_PIXEL


def _previous_to_rgb(img: Image.Image) -> np.ndarray:
    """The conversion as it was before (float64 and whole-image copies): the pixels to keep."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.asarray(Image.fromarray(gray, "L").convert("RGB"))
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _random_image(mode: str, width: int = 67, height: int = 45, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode.startswith("I;16"):
        arr = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        img = Image.frombytes(
            mode, (width, height), arr.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
        )
        return img
    if mode == "I":
        return Image.fromarray(rng.integers(-500, 70000, (height, width), dtype=np.int32), "I")
    if mode == "F":
        return Image.fromarray(rng.uniform(-20, 300, (height, width)).astype(np.float32), "F")
    if mode == "P transparency":
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert("P")
        img.info["transparency"] = int(np.asarray(img)[0, 0])
        return img
    bands = Image.getmodebands(mode)
    raw = rng.integers(0, 256, (height, width, bands), dtype=np.uint8).tobytes()
    img = Image.frombytes(mode, (width, height), raw)
    if mode in ("P", "PA"):
        img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
    return img


@pytest.mark.parametrize("mode", [m for m in memprobe.CONVERT_MODES if m != "La"])
def test_conversion_keeps_the_previous_pixels(mode: str) -> None:
    img = _random_image(mode)
    if mode == "I":  # both scalings: values up to 255, and beyond
        low = Image.fromarray(np.clip(np.asarray(img), -5, 255).astype(np.int32), "I")
        assert np.array_equal(to_rgb_array(low), _previous_to_rgb(low))
    out = to_rgb_array(img)
    assert out.dtype == np.uint8 and out.shape == (45, 67, 3) and out.flags.c_contiguous
    assert np.array_equal(out, _previous_to_rgb(img)), mode


def test_la_converts_although_pillow_cannot_take_it_to_rgba() -> None:
    img = _random_image("La")
    with pytest.raises(ValueError):
        img.convert("RGBA")  # the former path refused these as corrupt
    assert np.array_equal(to_rgb_array(img), _previous_to_rgb(img.convert("LA")))


def test_sixteen_bit_scaling_is_exact_for_every_value() -> None:
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    img = Image.frombytes("I;16", (256, 256), values.astype("<u2").tobytes())
    expected = np.clip(values / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(to_rgb_array(img)[..., 0], expected)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16", "P"])
def test_orientation_written_through_a_view_equals_exif_transpose(orientation: int, mode: str) -> None:
    img = _random_image(mode, 301, 7)  # several strips are not needed: the view is per pixel
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    reference = _previous_to_rgb(ImageOps.exif_transpose(img))
    assert np.array_equal(to_rgb_array(img, orientation), reference)


def test_strips_cover_the_image_exactly() -> None:
    width = 1000
    height = STRIP_PIXELS // width * 3 + 7  # three full strips and a short one
    img = _random_image("RGBA", width, height)
    assert np.array_equal(to_rgb_array(img, 6), np.rot90(_previous_to_rgb(img), -1))


@pytest.mark.parametrize("mode", memprobe.CONVERT_MODES)
def test_conversion_allocates_the_output_and_strips_only(mode: str) -> None:
    """tracemalloc sees numpy: one full-size array (the output), then strip-sized temporaries."""
    img = memprobe._mode_image(mode, 1200, 900)
    tracemalloc.start()
    try:
        out = to_rgb_array(img, 6)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (1200, 900, 3)
    assert peak <= OUTPUT_BYTES * 1200 * 900 + STRIP_ALLOWANCE, (mode, peak / MiB)


@pytest.fixture(scope="module")
def convert_rows() -> list[dict[str, Any]]:
    return memprobe.probe("convert", "--width", "2000", "--height", "1500")  # type: ignore[no-any-return]


@needs_proc
def test_conversion_peak_rss_is_the_output_plus_strips_for_every_mode(
    convert_rows: list[dict[str, Any]],
) -> None:
    """Any full-size intermediate (a 4-byte RGBA copy, a float64 array) would add 12 to 24 MiB here."""
    assert {r["mode"] for r in convert_rows} == set(memprobe.CONVERT_MODES)
    for r in convert_rows:
        bound = OUTPUT_BYTES * r["pixels"] + STRIP_ALLOWANCE + MiB
        assert r["peak"] <= bound, f"{r['mode']} orientation {r['orientation']}: {r['peak'] / MiB:.1f} MiB"
        assert r["shape"] == ([2000, 1500, 3] if r["orientation"] == 6 else [1500, 2000, 3])


@pytest.fixture(scope="module")
def mode_rows() -> list[dict[str, Any]]:
    return memprobe.probe("modes", "--width", "2000", "--height", "1500")  # type: ignore[no-any-return]


STATED = {"JPEG": 7, "PNG": 7, "WEBP": 19, "HEIF": 12, "AVIF": 12}
"""Most bytes per pixel stated for any mode of each container (4-byte modes: native 4 + output 3)."""


@needs_proc
def test_decoding_peak_rss_stays_within_the_stated_cost_per_mode(mode_rows: list[dict[str, Any]]) -> None:
    """Every mode of every accepted container: peak <= what the budget reserved, which is the stated
    bytes per pixel plus the strip and fixed allowances."""
    measured = [r for r in mode_rows if "skipped" not in r]
    assert len(measured) >= len(memprobe.FILE_MODES) - 1  # AVIF may lack libavif
    for r in measured:
        fmt = "HEIF" if r["container"] == "AVIF" else r["container"]
        px = r["pixels"]
        assert px == 2000 * 1500
        assert r["stated"] == bytes_per_pixel(fmt, r["mode"]) <= STATED[r["container"]]
        assert r["peak"] <= r["charged"], (r["container"], r["what"], r["peak"] / px, r["charged"] / px)
        slack = STRIP_ALLOWANCE + FIXED_DECODE_BYTES + (16 * MiB if fmt == "HEIF" else 0)
        assert r["peak"] <= r["stated"] * px + slack, (r["container"], r["what"], r["peak"] / px)


def test_stated_costs() -> None:
    assert [bytes_per_pixel("PNG", m) for m in ("1", "L", "P", "I;16", "RGB", "RGBA", "LA", "I")] == [
        4,
        4,
        4,
        5,
        7,
        7,
        7,
        7,
    ]
    assert bytes_per_pixel("WEBP", "RGBA") == 19 and bytes_per_pixel("HEIF", "RGB") == 12


def test_tracemalloc_sees_one_output_for_a_large_png() -> None:
    """A 4000x3000 RGBA zlib bomb within the limit: numpy holds the output and a strip, nothing more."""
    from hostile.images import png_zeros

    data = png_zeros(4000, 3000, color_type=6)
    tracemalloc.start()
    try:
        decoded = decode_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded.pixels.shape == (3000, 4000, 3)
    assert peak <= OUTPUT_BYTES * 12_000_000 + STRIP_ALLOWANCE + len(data) * 3


def test_decoded_pixels_are_writable_and_contiguous() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(buf, "PNG")
    pixels = decode_image(buf.getvalue()).pixels
    assert pixels.flags.c_contiguous and pixels.flags.writeable and pixels.dtype == np.uint8
