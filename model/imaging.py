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

Memory is bounded by design. Bytes are opened only by the Pillow plugin of the sniffed container
(:data:`SUPPORTED_FORMATS`; no TGA, PSD, EPS, PDF ... parser is reachable). The header gives the
mode and the decoded size; :func:`decode_cost` of that is reserved from a :class:`DecodeBudget`
(serving: :func:`decode_budget`, shared by the process) before any pixel is decoded. Decoding then
holds Pillow's image in its own mode and writes RGB straight into the output, strip by strip,
orienting by writing through a rotated view: no float64, and no full-size copy besides the output.
Peak bytes per decoded pixel (:func:`bytes_per_pixel`, measured in ``docs/RELIABILITY.md``):

======================================================  ==========  ====  =========
decoded mode (bytes a pixel in Pillow)                  JPEG, PNG   WebP  HEIF/AVIF
======================================================  ==========  ====  =========
1, L, P (1)                                             4           -     -
I;16, I;16B, I;16L, I;16N (2)                           5           -     -
RGB, RGBA, LA, CMYK, YCbCr, LAB, HSV, I, F, RGBX,       7           19    12
RGBa, La, PA (4)
======================================================  ==========  ====  =========

that is Pillow's image + the RGB output (3) + the decoder's own full-size buffers (WebP 12,
HEIF/AVIF 5); plus, for progressive or multi-scan JPEGs, libjpeg's coefficient buffer (2 bytes per
DCT coefficient of the *stored* size: 3 bytes a stored pixel at 4:2:0, 6 at 4:4:4, even when
decoding at reduced scale); plus at most 5 MiB of strip temporaries and 2 MiB of decoder state
(18 MiB for HEIF/AVIF). Before the reservation only the header is parsed: PNG text chunks are
limited to 4 MiB in all and an ICC profile to 1 MiB.
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from model.errors import CodedError

ResizePolicy = Literal["stretch", "letterbox"]
RESIZE_POLICIES: tuple[str, ...] = ("stretch", "letterbox")

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest photo (in pixels, from the header) accepted: a 48 MP phone photo fits."""

LETTERBOX_FILL = 127

SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIF")
"""Containers accepted, by the names :func:`sniff_format` gives (``HEIF`` covers HEIC and AVIF)."""

_PILLOW_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": ("JPEG",),  # Pillow's JPEG plugin (it returns MPO for multi-picture JPEGs)
    "PNG": ("PNG",),  # APNG included
    "WEBP": ("WEBP",),
    "HEIF": ("HEIF", "AVIF"),  # pillow-heif for HEIC, Pillow's own plugin for AVIF
}
"""The only Pillow plugins bytes can reach, by sniffed container: no TGA, PSD, EPS, PDF ... parser."""

OUTPUT_BYTES = 3
"""Bytes a pixel of the RGB output."""

_NATIVE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
"""Bytes a pixel Pillow holds for a decoded mode; every other mode (RGB, RGBA, LA, CMYK, I, F ...) 4."""

_DECODER_BYTES = {"WEBP": 12, "HEIF": 5}
"""Full-size buffers a decoder keeps besides Pillow's image, bytes per pixel (measured, rounded up):
libwebp's canvas and previous frame (8) and the bytes Pillow copies from them (4); libheif's and
libavif's YCbCr planes and RGB output (measured 0.5 to 3.7 above Pillow's image and the output).
"""

_DECODER_FIXED_BYTES = {"HEIF": 16 * 2**20}
"""Size-independent memory of a decoder beyond :data:`FIXED_DECODE_BYTES` (dav1d's and libde265's
per-thread state: about 10 MiB measured for AVIF)."""

STRIP_PIXELS = 1 << 17
"""Pixels converted to RGB at a time (whole rows); the conversion's temporaries are this size."""

STRIP_BYTES_PER_PIXEL = 40
"""Bytes a strip pixel of temporaries, worst case (alpha: crop, RGBA, white, composite, RGB, array)."""

FIXED_DECODE_BYTES = 2 * 2**20
"""Decoder state independent of the size (zlib window, libjpeg tables, Python objects)."""

DEFAULT_DECODE_BUDGET_BYTES = 2**30
"""Default capacity of the process-wide :class:`DecodeBudget`: two 50 MP photos at 8 bytes a pixel."""

DEFAULT_DECODE_WAIT_S = 2.0
"""How long a decode waits for room in the budget before it is refused."""

DECODE_RETRY_AFTER_S = 1
"""Seconds suggested to a client whose photo was refused for lack of decoding room."""

MAX_JPEG_SCANS = 100
"""Most scans a JPEG may have: each scan is a pass over the image (a scan bomb is a CPU bomb)."""

# Pillow's own bomb check warns at 89 MP and raises at 179 MP; ours runs first and is stricter.
Image.MAX_IMAGE_PIXELS = None
# PNG text chunks are inflated while the header is read, before the budget is reserved: Pillow
# allows 64 MiB in all (1 MiB a chunk, also the iCCP limit); 4 MiB is ample for metadata.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * 2**20

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"}
_heif_registered = False
_ORIENTATIONS = {i: i for i in range(1, 9)}  # looked up as Pillow's exif_transpose does (hash, ==)


class ImageError(CodedError):
    """A photo that cannot be used; ``code`` is stable and safe to return to API clients."""

    code = "invalid_image"


class EmptyImageError(ImageError):
    code = "empty_file"


class UnsupportedFormatError(ImageError):
    code = "unsupported_format"


class CorruptImageError(ImageError):
    code = "corrupt_image"


class ImageTooLargeError(ImageError):
    code = "image_too_large"


class DecodeBusyError(ImageError):
    """The decode budget had no room in time: retryable, serving answers ``429`` + ``Retry-After``."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
    """Name the image container from its magic bytes, or ``None`` when it is not a known image.

    Formats the service refuses are named too (``GIF``, ``BMP``, ``TIFF``, ``PSD``, ``ICO``,
    ``PDF``, ``EPS``), so that the refusal can say what the file is.
    """
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
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[:4] == b"8BPS":
        return "PSD"
    if data[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if data[:5] == b"%PDF-":
        return "PDF"
    if data[:4] in (b"%!PS", b"\xc5\xd0\xd3\xc6"):
        return "EPS"
    return None


def _register_heif() -> None:
    global _heif_registered
    if not _heif_registered:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_registered = True


# Decoding cost -----------------------------------------------------------------------------------
def bytes_per_pixel(fmt: str, mode: str) -> int:
    """Peak bytes per decoded pixel of :func:`decode_image` for this container and Pillow mode.

    The decoded image in its own mode (1, 2 or 4 bytes a pixel: Pillow keeps 3- and 4-band modes in
    4 bytes) + the RGB output (3) + the decoder's own full-size buffers (WebP and HEIF only).
    """
    return _NATIVE_BYTES.get(mode, 4) + OUTPUT_BYTES + _DECODER_BYTES.get(fmt, 0)


def decode_cost(fmt: str, mode: str, decoded_size: tuple[int, int], *, coefficient_bytes: int = 0) -> int:
    """Upper bound on the bytes one :func:`decode_image` call allocates, known before it decodes.

    Args:
        fmt: Container, as :func:`sniff_format` names it.
        mode: Pillow mode the file decodes to (from the header).
        decoded_size: ``(width, height)`` decoded, after any reduced-scale JPEG decoding.
        coefficient_bytes: libjpeg's whole-image DCT coefficient buffer (progressive or multi-scan
            JPEGs only; it is sized by the stored, not the reduced, resolution).

    Returns:
        Bytes: pixels times :func:`bytes_per_pixel`, plus the conversion's strip temporaries
        (bounded by :data:`STRIP_PIXELS`), plus a fixed allowance for decoder state.
    """
    pixels = decoded_size[0] * decoded_size[1]
    strip = min(pixels, STRIP_PIXELS) * STRIP_BYTES_PER_PIXEL
    fixed = FIXED_DECODE_BYTES + _DECODER_FIXED_BYTES.get(fmt, 0)
    return pixels * bytes_per_pixel(fmt, mode) + coefficient_bytes + strip + fixed


def _first_scan(data: bytes) -> tuple[int, int]:
    """``(components, end)`` of a JPEG's first scan header, ``(0, -1)`` when there is none.

    Walks the marker segments by their lengths (an EXIF thumbnail inside APP1 is skipped whole).
    """
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return 0, -1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # standalone markers
            pos += 2
            continue
        if marker == 0xD9:
            return 0, -1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            return (data[pos + 4] if pos + 4 < n else 0), pos + 2 + length
        pos += 2 + length
    return 0, -1


def _jpeg_scans(data: bytes, *, progressive: bool, components: int) -> int:
    """Scans in a JPEG's first image: 1 for a usual baseline file, about 10 for a progressive one.

    A sequential file whose first scan holds every component has exactly one (libjpeg refuses a
    second). Otherwise SOS markers are counted up to the first EOI: byte stuffing keeps ``FF DA``
    and ``FF D9`` out of entropy-coded data, and data after EOI (a second MPO picture, a ZIP) is
    not counted. Returns 0 when no scan is found (Pillow then reports the file as broken).
    """
    first, start = _first_scan(data)
    if start < 0:
        return 0
    if not progressive and first >= components:
        return 1
    end = data.find(b"\xff\xd9", start)
    return 1 + data.count(b"\xff\xda", start, end if end >= 0 else len(data))


def _coefficient_bytes(img: Image.Image, width: int, height: int) -> int:
    """libjpeg's whole-image coefficient buffer: 2 bytes per DCT coefficient of every component."""
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * 4
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    total = 0
    for _, h, v, _ in layers:
        blocks_x = -(-width * max(h, 1) // (8 * h_max)) + h_max  # ceil, plus MCU padding
        blocks_y = -(-height * max(v, 1) // (8 * v_max)) + v_max
        total += blocks_x * blocks_y * 64 * 2
    return total


# The process-wide budget of decoding bytes in flight --------------------------------------------
class DecodeBudget:
    """Bytes of decoding in flight in one process, shared by all its threads (thread-safe).

    :func:`decode_image` reserves :func:`decode_cost` (known from the header: the decoded width x
    height, the mode and the container) *before* it allocates, and gives it back when it returns
    or fails. A reservation that does not fit waits, first come first served, for at most
    ``max_wait_s``; then :class:`DecodeBusyError` is raised. A photo that needs more than the whole
    capacity can never fit and is refused at once with :class:`ImageTooLargeError`.

    Serving uses the process-wide instance::

        decoded = decode_image(data, max_pixels=..., draft_size=..., budget=decode_budget())

    and maps :class:`DecodeBusyError` (an :class:`ImageError` whose ``code`` is ``"overloaded"``)
    to ``429`` with ``Retry-After: <exc.retry_after>``. :func:`configure_decode_budget` sets the
    capacity at start-up. Training and offline tools pass no budget.

    Args:
        capacity_bytes: Bytes that may be reserved at once (> 0).
        max_wait_s: Longest a reservation waits for room before it is refused (>= 0).
    """

    def __init__(self, capacity_bytes: int, *, max_wait_s: float = DEFAULT_DECODE_WAIT_S) -> None:
        if capacity_bytes <= 0 or max_wait_s < 0:
            raise ValueError(
                f"A decode budget needs capacity_bytes > 0 and max_wait_s >= 0; got {capacity_bytes}, {max_wait_s}."
            )
        self.capacity_bytes = capacity_bytes
        self.max_wait_s = max_wait_s
        self.refused = 0  # reservations refused after waiting (for metrics)
        self._in_use = 0
        self._queue: deque[object] = deque()  # waiting reservations, oldest first
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes reserved now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Reservations waiting for room now."""
        return len(self._queue)

    def acquire(self, nbytes: int) -> None:
        """Reserve ``nbytes``, waiting up to ``max_wait_s`` behind earlier reservations.

        Raises:
            ImageTooLargeError: ``nbytes`` exceeds the whole capacity.
            DecodeBusyError: no room within ``max_wait_s``.
        """
        if nbytes > self.capacity_bytes:
            raise ImageTooLargeError(
                f"Decoding this image needs {_mb(nbytes)}, more than the whole decode budget "
                f"({_mb(self.capacity_bytes)})."
            )
        deadline = time.monotonic() + self.max_wait_s
        with self._cond:
            if not self._queue and self._in_use + nbytes <= self.capacity_bytes:
                self._in_use += nbytes
                return
            ticket = object()
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self._in_use + nbytes > self.capacity_bytes:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.refused += 1
                        raise DecodeBusyError(
                            f"Decoding is at capacity ({_mb(self._in_use)} of {_mb(self.capacity_bytes)} "
                            f"in use, {len(self._queue)} waiting); this image needs {_mb(nbytes)}. "
                            f"Retry in {DECODE_RETRY_AFTER_S} s.",
                            retry_after=DECODE_RETRY_AFTER_S,
                        )
                    self._cond.wait(left)
                self._in_use += nbytes
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in line may fit now

    def release(self, nbytes: int) -> None:
        """Give back a reservation made by :meth:`acquire`."""
        with self._cond:
            self._in_use = max(0, self._in_use - nbytes)
            self._cond.notify_all()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """``with budget.reserve(n):`` holds ``n`` bytes for the block (see :meth:`acquire`)."""
        self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)


_budget: DecodeBudget | None = None
_budget_lock = threading.Lock()


def decode_budget() -> DecodeBudget:
    """The process-wide :class:`DecodeBudget` (created on first use with the default capacity)."""
    global _budget
    with _budget_lock:
        if _budget is None:
            _budget = DecodeBudget(DEFAULT_DECODE_BUDGET_BYTES)
        return _budget


def configure_decode_budget(
    capacity_bytes: int = DEFAULT_DECODE_BUDGET_BYTES, *, max_wait_s: float = DEFAULT_DECODE_WAIT_S
) -> DecodeBudget:
    """Replace the process-wide budget (at start-up; decodes in flight finish on the old one)."""
    global _budget
    budget = DecodeBudget(capacity_bytes, max_wait_s=max_wait_s)
    with _budget_lock:
        _budget = budget
    return budget


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


# Conversion to RGB ---------------------------------------------------------------------------
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""Pillow's ``exif_transpose`` methods by EXIF orientation."""


def _gray16(values: np.ndarray) -> Image.Image:
    """16-bit grey to 8-bit RGB, rounded: ``round(v * 255 / 65535)`` equals ``(v + 128) // 257`` exactly."""
    gray = np.clip((values.astype(np.int64) + 128) // 257, 0, 255).astype(np.uint8)
    return Image.fromarray(gray, "L").convert("RGB")


def _strip_converter(img: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """How one horizontal strip of ``img`` becomes an RGB strip (the former whole-image rules)."""
    mode = img.mode
    if mode == "RGB":
        return lambda s: s
    if mode.startswith("I;16"):
        return lambda s: _gray16(np.asarray(s))
    if mode == "I":
        top = img.getextrema()[1]  # one pass over the pixels, nothing allocated
        if isinstance(top, (int, float)) and top > 255:
            return lambda s: _gray16(np.asarray(s))
        return lambda s: Image.fromarray(np.clip(np.asarray(s), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return _over_white
    # CMYK (Pillow inverts Adobe CMYK JPEGs itself), L, 1, P, YCbCr, LAB, HSV, RGBX, F ...
    return lambda s: s.convert("RGB")


def _over_white(strip: Image.Image) -> Image.Image:
    """Composite a strip with transparency over white (Pillow's ``alpha_composite``, as before)."""
    if strip.mode == "La":  # Pillow converts La to LA only
        strip = strip.convert("LA")
    rgba = strip.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def to_rgb_array(img: Image.Image, orientation: int = 1) -> np.ndarray:
    """Convert a loaded image of any Pillow mode to oriented ``(H, W, 3)`` uint8 RGB.

    16-bit and 32-bit grey scale to 8 bits in integers (``I`` by 255 unless a value exceeds 255,
    as before); transparency (alpha, premultiplied alpha, palette transparency) is composited over
    white; other modes go through Pillow's ``convert``. The work is done in horizontal strips of
    about :data:`STRIP_PIXELS` pixels, each converted, turned by the EXIF ``orientation`` (1..8,
    as Pillow's ``exif_transpose`` would) and written straight to its place in the output, so the
    only full-size allocation is the output itself (3 bytes a pixel).
    """
    w, h = img.size
    swap = orientation in (5, 6, 7, 8)  # stored rows become columns
    reverse = orientation in (3, 4, 6, 7)  # stored row y lands at h - 1 - y
    out = np.empty((w, h, 3) if swap else (h, w, 3), dtype=np.uint8)
    convert = _strip_converter(img)
    method = _TRANSPOSE.get(orientation)
    rows = max(1, STRIP_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        strip = convert(img.crop((0, y0, w, y1)))
        if method is not None:
            strip = strip.transpose(method)
        a, b = (h - y1, h - y0) if reverse else (y0, y1)
        if swap:
            out[:, a:b] = np.asarray(strip)
        else:
            out[a:b] = np.asarray(strip)
    return out


# Opening and decoding ----------------------------------------------------------------------------
def _check_format(data: bytes, allowed_formats: tuple[str, ...]) -> str:
    if not data:
        raise EmptyImageError("The file is empty (0 bytes).")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedFormatError(
            f"Not a recognised image (content starts with {data[:8]!r}). "
            f"Supported formats: {', '.join(allowed_formats)}."
        )
    if fmt not in allowed_formats or fmt not in _PILLOW_FORMATS:
        raise UnsupportedFormatError(
            f"{fmt} images are not accepted. Supported formats: {', '.join(allowed_formats)}."
        )
    return fmt


def _open(data: bytes, fmt: str) -> Image.Image:
    """Open with only the Pillow plugins of the sniffed container: no other plugin sees the bytes."""
    if fmt == "HEIF":
        _register_heif()
    try:
        return Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS[fmt])
    except UnidentifiedImageError:  # its message names an in-memory object, not the problem
        raise CorruptImageError(
            f"The file starts like a {fmt} image but its header is broken or truncated."
        ) from None
    except (OSError, EOFError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError) as exc:
        # RuntimeError: Pillow's AVIF plugin on a malformed file (found by benchmarks/fuzz_decode.py)
        raise CorruptImageError(f"The {fmt} header could not be read: {exc}") from None


def read_header(data: bytes, *, allowed_formats: tuple[str, ...] = SUPPORTED_FORMATS) -> tuple[str, int, int]:
    """Sniff and open a photo without decoding pixels.

    Returns:
        ``(format, width, height)`` as stored (before EXIF orientation).

    Raises:
        ImageError: empty, not an image, a format outside ``allowed_formats``, or a broken header.
    """
    fmt = _check_format(data, allowed_formats)
    with _open(data, fmt) as img:
        return fmt, img.size[0], img.size[1]


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"The image declares an empty size {width}x{height}.")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width}x{height} = {width * height / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.1f} MP."
        )


def _prepare_jpeg(img: Image.Image, data: bytes, draft_size: int | None) -> int:
    """Refuse scan bombs, set reduced-scale decoding; returns the coefficient buffer's bytes."""
    width, height = img.size
    progressive = bool(img.info.get("progressive"))
    scans = _jpeg_scans(data, progressive=progressive, components=getattr(img, "layers", 1))
    if scans > MAX_JPEG_SCANS:
        raise CorruptImageError(
            f"The JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are accepted (a progressive photo has about 10)."
        )
    if draft_size is not None and img.mode in ("RGB", "L", "CMYK", "YCbCr"):
        # draft() keeps the decoded size >= the requested one; ask in stored orientation.
        short = min(width, height)
        if short > draft_size:
            ratio = draft_size / short
            img.draft(img.mode, (max(1, int(width * ratio)), max(1, int(height * ratio))))
    if progressive or scans > 1:
        return _coefficient_bytes(img, width, height)
    return 0


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    allowed_formats: tuple[str, ...] = SUPPORTED_FORMATS,
    budget: DecodeBudget | None = None,
) -> DecodedImage:
    """Decode a photo to RGB pixels, safely and at no more resolution than needed.

    Memory is bounded by design: the header is read first (size, mode, container), the pixel
    limit is checked, :func:`decode_cost` is reserved from ``budget`` and only then are pixels
    decoded; the conversion to RGB adds the output and strip-sized temporaries only (see the
    module docstring for the cost per mode).

    Args:
        data: The file's bytes.
        max_pixels: Refuse photos whose header declares more pixels than this, before decoding.
        draft_size: When set, JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose
            shorter side is still at least this many pixels; other formats decode in full.
        allowed_formats: Containers accepted, by the names :func:`sniff_format` returns.
        budget: When set, the decoding's cost is reserved from it before any pixel is decoded and
            given back on return (serving passes :func:`decode_budget`); ``None``: no budget.

    Returns:
        The decoded image with its original (oriented) size.

    Raises:
        ImageError: with a stable ``code``: ``empty_file``, ``unsupported_format``,
            ``corrupt_image``, ``image_too_large``, or ``overloaded`` (:class:`DecodeBusyError`,
            the budget had no room in time).
    """
    fmt = _check_format(data, allowed_formats)
    with _open(data, fmt) as img:
        width, height = img.size
        _check_size(width, height, max_pixels)
        source_mode = img.mode
        try:
            coefficients = _prepare_jpeg(img, data, draft_size) if fmt == "JPEG" else 0
            cost = decode_cost(fmt, img.mode, img.size, coefficient_bytes=coefficients)
            with budget.reserve(cost) if budget is not None else nullcontext():
                # PNG's getexif() loads the pixels (an eXIf chunk may follow the image data), so it
                # runs inside the reservation. A malformed tag (text, bytes, out of range) is ignored
                # here as by Pillow's exif_transpose (same lookup), so the size matches the pixels.
                tag = img.getexif().get(0x0112, 1)
                try:
                    orientation = _ORIENTATIONS.get(tag, 1)
                except TypeError:  # an unhashable value
                    orientation = 1
                img.load()
                w, h = img.size  # stored orientation, as decoded
                pixels = to_rgb_array(img, orientation)
        except ImageError:
            raise
        except (
            OSError,
            EOFError,
            SyntaxError,
            ValueError,
            RuntimeError,
            UnidentifiedImageError,
            Image.DecompressionBombError,
        ) as exc:  # EOFError: pillow-heif on a HEVC stream cut short; RuntimeError: the AVIF plugin
            raise CorruptImageError(f"The {fmt} image could not be decoded: {exc}") from None
    if fmt != "JPEG" and (h, w) != (height, width):  # a HEIF whose header (ispe, clap) and pixels
        width, height = w, h  # differ: report what was decoded (libheif allows 64 pixels a side more)
    original = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return DecodedImage(
        pixels=pixels,
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
