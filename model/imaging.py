"""Image decoding and resizing: the one preprocessing path shared by training, export and serving.

Everything a photo goes through before the network lives here, in numpy + Pillow, so that the
served model sees exactly the pixels it was evaluated on:

1. :func:`sniff_format` names the container from its first bytes (never from a file name or a
   Content-Type header).
2. :func:`decode_image` checks the pixel count from the header *before* decoding (decompression
   bombs are refused without allocating), decodes large JPEGs at a reduced DCT scale ("draft"),
   applies the EXIF orientation and converts every mode (CMYK, 16-bit, palette, alpha) to RGB.
3. :func:`resize_for_model` resizes to the network's input size by the bundle's policy and
   returns the :class:`Geometry` that maps model coordinates back to the original photo.

Normalisation (mean/std) is *not* here: it is inside the exported graph, which takes uint8.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ResizePolicy = Literal["stretch", "letterbox"]
RESIZE_POLICIES: tuple[str, ...] = ("stretch", "letterbox")

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest photo (in pixels, from the header) accepted: a 48 MP phone photo fits."""

LETTERBOX_FILL = 127

SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIF")

# Pillow's own bomb check warns at 89 MP and raises at 179 MP; ours runs first and is stricter.
Image.MAX_IMAGE_PIXELS = None

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"}
_heif_registered = False
_ORIENTATIONS = (1, 2, 3, 4, 5, 6, 7, 8)


class ImageError(ValueError):
    """A photo that cannot be used; ``code`` is stable and safe to return to API clients."""

    code = "invalid_image"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyImageError(ImageError):
    code = "empty_file"


class UnsupportedFormatError(ImageError):
    code = "unsupported_format"


class CorruptImageError(ImageError):
    code = "corrupt_image"


class ImageTooLargeError(ImageError):
    code = "image_too_large"


@dataclass(frozen=True)
class DecodedImage:
    """A photo decoded to RGB.

    Attributes:
        pixels: ``(H, W, 3)`` uint8 RGB, EXIF orientation applied; possibly reduced in scale.
        original_size: ``(width, height)`` of the full-resolution photo after orientation.
        format: Container format sniffed from the bytes (``JPEG``, ``PNG``, ``WEBP``, ``HEIF``).
        source_mode: Pillow mode before conversion (``RGB``, ``CMYK``, ``I;16``, ``P`` ...).
        exif_orientation: EXIF orientation tag (1 = upright), 1 when absent.
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    format: str
    source_mode: str
    exif_orientation: int

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: multiply decoded-pixel coordinates by these to get original coordinates."""
        h, w = self.pixels.shape[:2]
        return self.original_size[0] / w, self.original_size[1] / h


@dataclass(frozen=True)
class Geometry:
    """How a model input was cut from a decoded image, to map boxes back.

    Model pixel ``(x, y)`` corresponds to original-photo pixel
    ``((x - pad_x) * scale_x, (y - pad_y) * scale_y)``.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    original_size: tuple[int, int]

    def to_original(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """Map an ``(x0, y0, x1, y1)`` box in model pixels to clipped original-photo pixels."""
        w, h = self.original_size
        x0 = (box[0] - self.pad_x) * self.scale_x
        y0 = (box[1] - self.pad_y) * self.scale_y
        x1 = (box[2] - self.pad_x) * self.scale_x
        y1 = (box[3] - self.pad_y) * self.scale_y
        return (
            round(min(max(x0, 0.0), w)),
            round(min(max(y0, 0.0), h)),
            round(min(max(x1, 0.0), w)),
            round(min(max(y1, 0.0), h)),
        )


def sniff_format(data: bytes) -> str | None:
    """Name the image container from its magic bytes, or ``None`` when it is not a known image."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_registered = True


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited over white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK (Pillow inverts Adobe CMYK JPEGs itself), L, 1, P, YCbCr, LAB, F ...
    return img.convert("RGB")


def read_header(data: bytes, *, allowed_formats: tuple[str, ...] = SUPPORTED_FORMATS) -> tuple[str, int, int]:
    """Sniff and open a photo without decoding pixels.

    Returns:
        ``(format, width, height)`` as stored (before EXIF orientation).

    Raises:
        ImageError: empty, not an image, a format outside ``allowed_formats``, or a broken header.
    """
    if not data:
        raise EmptyImageError("The file is empty (0 bytes).")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedFormatError(
            f"Not a recognised image (content starts with {data[:8]!r}). "
            f"Supported formats: {', '.join(allowed_formats)}."
        )
    if fmt not in allowed_formats:
        raise UnsupportedFormatError(
            f"{fmt} images are not accepted. Supported formats: {', '.join(allowed_formats)}."
        )
    if fmt == "HEIF":
        _register_heif()
    try:
        with Image.open(io.BytesIO(data)) as img:
            return fmt, img.size[0], img.size[1]
    except UnidentifiedImageError:  # its message names an in-memory object, not the problem
        raise CorruptImageError(
            f"The file starts like a {fmt} image but its header is broken or truncated."
        ) from None
    except (OSError, EOFError, SyntaxError, ValueError) as exc:
        raise CorruptImageError(f"The {fmt} header could not be read: {exc}") from None


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    allowed_formats: tuple[str, ...] = SUPPORTED_FORMATS,
) -> DecodedImage:
    """Decode a photo to RGB pixels, safely and at no more resolution than needed.

    Args:
        data: The file's bytes.
        max_pixels: Refuse photos whose header declares more pixels than this, before decoding.
        draft_size: When set, JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose
            shorter side is still at least this many pixels; other formats decode in full.
        allowed_formats: Containers accepted, by the names :func:`sniff_format` returns.

    Returns:
        The decoded image with its original (oriented) size.

    Raises:
        ImageError: with a stable ``code``: ``empty_file``, ``unsupported_format``,
            ``corrupt_image`` or ``image_too_large``.
    """
    fmt, width, height = read_header(data, allowed_formats=allowed_formats)
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"The image declares an empty size {width}x{height}.")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} = {width * height / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.1f} MP."
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            source_mode = img.mode
            # exif_transpose acts on the tag's value only when it equals 1..8; a malformed tag (text,
            # bytes, out of range) is ignored by both, so the reported size matches the pixels.
            tag = img.getexif().get(0x0112, 1)
            orientation = int(tag) if tag in _ORIENTATIONS else 1
            if fmt == "JPEG" and draft_size is not None and img.mode in ("RGB", "L", "CMYK", "YCbCr"):
                # draft() keeps the decoded size >= the requested one; ask in stored orientation.
                short = min(width, height)
                if short > draft_size:
                    ratio = draft_size / short
                    img.draft(img.mode, (max(1, int(width * ratio)), max(1, int(height * ratio))))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of an upright photo
            rgb = _to_rgb(img)
            pixels = np.asarray(rgb, dtype=np.uint8)
    except ImageError:
        raise
    except (
        OSError,
        EOFError,
        SyntaxError,
        ValueError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
    ) as exc:  # EOFError: pillow-heif on a HEVC stream cut short
        raise CorruptImageError(f"The {fmt} image could not be decoded: {exc}") from None
    original = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise CorruptImageError(f"Decoding produced an array of shape {pixels.shape}, expected (H, W, 3).")
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        original_size=original,
        format=fmt,
        source_mode=source_mode,
        exif_orientation=orientation,
    )


def resize_for_model(
    image: DecodedImage | np.ndarray,
    size: tuple[int, int],
    *,
    policy: ResizePolicy = "stretch",
) -> tuple[np.ndarray, Geometry]:
    """Resize RGB pixels to the network input.

    Args:
        image: A decoded image, or ``(H, W, 3)`` uint8 pixels (then original = these pixels).
        size: ``(height, width)`` of the network input.
        policy: ``stretch`` resizes both axes independently (the whole photo, mild distortion);
            ``letterbox`` keeps the aspect ratio and pads with mid-grey.

    Returns:
        ``(H, W, 3)`` uint8 model input and the geometry mapping it back to the original photo.

    Raises:
        ValueError: an unknown policy (the message lists the allowed ones).
    """
    if isinstance(image, DecodedImage):
        pixels, original = image.pixels, image.original_size
    else:
        pixels = image
        original = (int(image.shape[1]), int(image.shape[0]))
    th, tw = size
    h, w = pixels.shape[:2]
    src = Image.fromarray(pixels)
    if policy == "stretch":
        out = np.asarray(src.resize((tw, th), Image.Resampling.BILINEAR), dtype=np.uint8)
        geometry = Geometry(original[0] / tw, original[1] / th, 0.0, 0.0, original)
        return out, geometry
    if policy == "letterbox":
        ratio = min(tw / w, th / h)
        nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
        canvas = np.full((th, tw, 3), LETTERBOX_FILL, dtype=np.uint8)
        px, py = (tw - nw) // 2, (th - nh) // 2
        canvas[py : py + nh, px : px + nw] = np.asarray(src.resize((nw, nh), Image.Resampling.BILINEAR))
        geometry = Geometry(original[0] / nw, original[1] / nh, float(px), float(py), original)
        return canvas, geometry
    raise ValueError(f"Unknown resize policy {policy!r}. Allowed: {', '.join(RESIZE_POLICIES)}.")


def sharpness(pixels: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image: low values mean blur.

    Computed on the model input (fixed size), so the figure is comparable across photos.
    """
    gray = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = -4.0 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:]
    return float(lap.var())
