"""The shared decoding path: formats, modes, orientation, limits, reduced-scale JPEG decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from factories import jpeg_bytes
from PIL import Image

from model.imaging import (
    CorruptImageError,
    DecodedImage,
    EmptyImageError,
    ImageTooLargeError,
    UnsupportedFormatError,
    decode_image,
    resize_for_model,
    sharpness,
    sniff_format,
)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_sniffs_formats_from_bytes_not_names() -> None:
    assert sniff_format(jpeg_bytes(16, 16)) == "JPEG"
    assert sniff_format(_png(Image.new("RGB", (4, 4)))) == "PNG"
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "WEBP")
    assert sniff_format(buf.getvalue()) == "WEBP"
    assert sniff_format(b"hello world, not an image") is None


def test_decodes_heic(tmp_path) -> None:
    import pillow_heif

    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :32] = (200, 30, 30)
    heif = pillow_heif.from_bytes(mode="RGB", size=(64, 48), data=pixels.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=95)
    decoded = decode_image(buf.getvalue())
    assert decoded.format == "HEIF"
    assert decoded.pixels.shape == (48, 64, 3)
    assert decoded.pixels[:, :16, 0].mean() > 150 and decoded.pixels[:, 48:, 0].mean() < 60


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyImageError),
        (b"%PDF-1.4 not a photo", UnsupportedFormatError),
        (jpeg_bytes(64, 64)[:200], CorruptImageError),
    ],
)
def test_bad_bytes_raise_specific_errors_with_codes(data: bytes, error: type) -> None:
    with pytest.raises(error) as info:
        decode_image(data)
    assert info.value.code in {"empty_file", "unsupported_format", "corrupt_image"}
    assert info.value.message


def test_truncated_jpeg_is_refused_not_half_decoded() -> None:
    data = jpeg_bytes(400, 300)
    with pytest.raises(CorruptImageError):
        decode_image(data[: len(data) * 2 // 3])


def test_gif_refused_by_default_with_allowed_list() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "GIF")
    with pytest.raises(UnsupportedFormatError, match="JPEG, PNG, WEBP, HEIF"):
        decode_image(buf.getvalue())


def test_pixel_limit_checked_before_decoding() -> None:
    # A 20000x20000 PNG of one colour compresses to a few hundred KB but would need 1.2 GB decoded.
    img = Image.new("L", (20000, 20000), 0)
    data = _png(img)
    assert len(data) < 2_000_000
    with pytest.raises(ImageTooLargeError, match=r"400\.0 MP"):
        decode_image(data, max_pixels=50_000_000)


@pytest.mark.parametrize(
    ("orientation", "size"), [(1, (320, 240)), (6, (240, 320)), (8, (240, 320)), (3, (320, 240))]
)
def test_exif_orientation_applied(orientation: int, size: tuple[int, int]) -> None:
    decoded = decode_image(jpeg_bytes(320, 240, exif_orientation=orientation))
    assert decoded.exif_orientation == orientation
    assert decoded.original_size == size
    assert decoded.pixels.shape[:2] == (size[1], size[0])


def test_exif_rotation_moves_content() -> None:
    # Left half red in stored pixels; orientation 6 (rotate 90 CW to display) puts red on top.
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(buf.getvalue()).pixels
    assert out.shape == (80, 40, 3)
    assert out[:30, :, 0].mean() > 200 and out[50:, :, 0].mean() < 50


def test_draft_decoding_reduces_scale_but_keeps_original_size() -> None:
    data = jpeg_bytes(1600, 1200)
    full = decode_image(data)
    small = decode_image(data, draft_size=224)
    assert full.pixels.shape == (1200, 1600, 3)
    assert small.pixels.shape == (300, 400, 3)  # 1/4 scale: smallest with short side >= 224
    assert small.original_size == (1600, 1200)
    assert small.scale == (4.0, 4.0)
    # Content agrees with a full decode resized down.
    ref = np.asarray(Image.fromarray(full.pixels).resize((400, 300), Image.Resampling.BILINEAR), np.float32)
    assert np.abs(ref - small.pixels.astype(np.float32)).mean() < 8


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("CMYK", lambda: Image.new("CMYK", (32, 24), (0, 255, 255, 0))),  # red in CMYK
        ("I;16", lambda: Image.fromarray(np.full((24, 32), 65535, np.uint16))),
        ("LA", lambda: Image.new("LA", (32, 24), (0, 0))),
        ("P", lambda: Image.new("RGB", (32, 24), (0, 0, 255)).convert("P")),
    ],
)
def test_all_modes_become_rgb(mode: str, make) -> None:
    img = make()
    buf = io.BytesIO()
    img.save(buf, "JPEG" if mode == "CMYK" else "PNG")
    decoded = decode_image(buf.getvalue())
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (24, 32, 3)
    assert decoded.source_mode == mode
    px = decoded.pixels[12, 16].astype(int)
    expected = {"CMYK": (255, 0, 0), "I;16": (255, 255, 255), "LA": (255, 255, 255), "P": (0, 0, 255)}[mode]
    assert np.abs(px - np.array(expected)).max() < 40, px


def test_palette_with_transparency_composited_on_white() -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 0
    decoded = decode_image(_png(img))
    assert tuple(decoded.pixels[0, 0]) == (255, 0, 0)
    assert tuple(decoded.pixels[4, 4]) == (255, 255, 255)


def test_stretch_and_letterbox_geometry_map_back_to_original() -> None:
    pixels = np.zeros((100, 200, 3), np.uint8)
    decoded = DecodedImage(pixels, (400, 200), "JPEG", "RGB", 1)  # decoded at half scale
    out, geo = resize_for_model(decoded, (50, 50), policy="stretch")
    assert out.shape == (50, 50, 3)
    assert geo.to_original((0, 0, 50, 50)) == (0, 0, 400, 200)
    assert geo.to_original((25, 25, 50, 50)) == (200, 100, 400, 200)
    out, geo = resize_for_model(decoded, (50, 50), policy="letterbox")
    assert out.shape == (50, 50, 3)
    assert out[0, 0, 0] == 127 and out[25, 25, 0] == 0  # padded top, content centre
    assert geo.to_original((0, 12, 50, 37)) == (0, 0, 400, 200)  # content rows 12..37


def test_unknown_resize_policy_names_allowed() -> None:
    with pytest.raises(ValueError, match="stretch, letterbox"):
        resize_for_model(np.zeros((8, 8, 3), np.uint8), (4, 4), policy="crop")  # type: ignore[arg-type]


def test_sharpness_drops_with_blur() -> None:
    from PIL import ImageFilter

    img = Image.open(io.BytesIO(jpeg_bytes(128, 128)))
    sharp = sharpness(np.asarray(img))
    blurred = sharpness(np.asarray(img.filter(ImageFilter.GaussianBlur(3))))
    assert blurred < sharp / 5
