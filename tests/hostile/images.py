"""The image half of the hostile corpus: files generated at test time, each with its expected outcome.

``cases()`` returns :class:`Case` objects (name, bytes, expected outcome). The decoding tests
(``tests/model/test_imaging_hostile.py``) give each to :func:`model.imaging.decode_image`; the HTTP
tests send the same bytes to a real server and expect ``case.http_status`` with the decoded size
or the refusal's ``code``. Every file is under 1 MB and built in memory in about a second; nothing
is downloaded. Outcomes assume the default pixel limit (:data:`model.imaging.DEFAULT_MAX_PIXELS`).

Groups: ``mode`` (every mode a file can decode to), ``bomb`` (huge declared sizes, zlib, text and
scan bombs), ``truncated`` and ``corrupt``, ``exif`` (every orientation, malformed tags), ``icc``,
``animated``, ``polyglot``, ``tiny`` (0, 1 and 3 bytes, 1-pixel and 1-row images), ``format``
(containers the service refuses) and ``text`` (not images at all, named ``.jpg``).
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageCms, features

from model.imaging import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    UnsupportedFormatError,
)


@dataclass(frozen=True)
class Decoded:
    """Expected to decode: ``size`` is the oriented ``(width, height)``, ``mode`` Pillow's mode."""

    size: tuple[int, int]
    mode: str
    format: str
    orientation: int = 1


@dataclass(frozen=True)
class Refused:
    """Expected to be refused with ``error`` (its stable ``code``), the message matching ``match``."""

    error: type[ImageError]
    match: str

    @property
    def code(self) -> str:
        return self.error.code


@dataclass(frozen=True)
class Case:
    """One hostile file."""

    name: str
    group: str
    data: bytes
    expect: Decoded | Refused
    what: str

    @property
    def http_status(self) -> int:
        """What a server answers for this file alone on ``POST /v1/score``."""
        return 200 if isinstance(self.expect, Decoded) else 422


# builders ----------------------------------------------------------------------------------------
def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random pixels in ``mode`` (made from RGB or RGBA noise)."""
    rng = np.random.default_rng(seed)
    rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    if mode == "RGBA":
        return rgba
    if mode == "LA":
        return Image.merge("LA", (rgba.convert("L"), rgba.getchannel("A")))
    return rgba.convert("RGB").convert(mode)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_raw(
    width: int,
    height: int,
    *,
    bit_depth: int,
    color_type: int,
    idat: bytes,
    before: Iterable[bytes] = (),
    interlace: int = 0,
) -> bytes:
    """A PNG written by hand (Pillow cannot save 16-bit colour) from a ready zlib stream."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + b"".join(before)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def png16(width: int, height: int, color_type: int, seed: int = 0) -> bytes:
    """A 16-bit PNG of random samples (grey 0, RGB 2, grey+alpha 4, RGBA 6)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 65536, (height, width * _CHANNELS[color_type]), dtype=np.uint16)
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in arr)
    return png_raw(width, height, bit_depth=16, color_type=color_type, idat=zlib.compress(raw))


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_interlaced(rgb: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG (Pillow reads interlaced PNGs but does not write them)."""
    height, width = rgb.shape[:2]
    raw = b""
    for x0, y0, dx, dy in _ADAM7:
        sub = rgb[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\0" + row.tobytes() for row in sub)
    return png_raw(width, height, bit_depth=8, color_type=2, idat=zlib.compress(raw), interlace=1)


def png_zeros(width: int, height: int, color_type: int = 6, bit_depth: int = 8) -> bytes:
    """A zlib bomb: a real PNG of all-zero rows, compressed about 1000:1, built row by row."""
    row = b"\0" * (1 + width * _CHANNELS[color_type] * bit_depth // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return png_raw(width, height, bit_depth=bit_depth, color_type=color_type, idat=idat)


def png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR is patched to declare ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def png_with_chunks(chunks: Iterable[bytes], size: tuple[int, int] = (32, 24)) -> bytes:
    """A small RGB PNG with extra chunks inserted before its image data."""
    data = encode(noise(*size), "PNG")
    at = data.find(b"IDAT") - 4
    return data[:at] + b"".join(chunks) + data[at:]


def jpeg_declaring(data: bytes, width: int, height: int) -> bytes:
    """Patch a JPEG's frame header (SOF0/1/2) to declare another size."""
    out = bytearray(data)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        at = out.find(marker)
        if at >= 0:
            out[at + 5 : at + 9] = struct.pack(">HH", height, width)
            return bytes(out)
    raise ValueError("no SOF marker")


def jpeg_with_exif(tiff: bytes, size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG carrying ``tiff`` (a TIFF-structured EXIF block, possibly malformed) in APP1."""
    return encode(noise(*size), "JPEG", exif=b"Exif\x00\x00" + tiff)


def exif_orientation_entry(kind: int, count: int, value: bytes) -> bytes:
    """TIFF bytes whose only IFD entry is the orientation tag with TIFF type ``kind``."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, kind, count) + value + struct.pack("<I", 0)
    extra = struct.pack("<II", 6, 1) if kind == 5 else b""  # a rational's value follows the IFD
    return b"II*\x00" + struct.pack("<I", 8) + ifd + extra


def jpeg_oriented(orientation: int, size: tuple[int, int] = (64, 48)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(noise(*size), "JPEG", exif=exif.tobytes())


def jpeg_scan_bomb(extra_scans: int) -> bytes:
    """A progressive JPEG whose last scan is repeated: each scan is one more pass over the image."""
    data = encode(noise(128, 96), "JPEG", progressive=True, quality=60)
    last = data.rfind(b"\xff\xda")
    eoi = data.rfind(b"\xff\xd9")
    return data[:eoi] + data[last:eoi] * extra_scans + data[eoi:]


def webp_animated(canvas: tuple[int, int] | None = None) -> bytes:
    frames = [noise(96, 80, seed=s) for s in range(3)]
    data = bytearray(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100))
    if canvas is not None:  # VP8X holds canvas width-1 and height-1 as 24-bit little-endian
        at = data.find(b"VP8X")
        data[at + 12 : at + 15] = (canvas[0] - 1).to_bytes(3, "little")
        data[at + 15 : at + 18] = (canvas[1] - 1).to_bytes(3, "little")
    return bytes(data)


def webp_lossless_declaring(width: int, height: int) -> bytes:
    """A lossless (VP8L) WebP whose bitstream header declares another size (14 bits each)."""
    data = bytearray(encode(noise(40, 30), "WEBP", lossless=True))
    at = data.find(b"VP8L") + 8  # chunk header, then the 0x2f signature
    bits = int.from_bytes(data[at + 1 : at + 5], "little")
    bits = (bits & ~0x0FFFFFFF) | (width - 1) | ((height - 1) << 14)
    data[at + 1 : at + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def heic(img: Image.Image) -> bytes:
    import pillow_heif

    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=50)
    return buf.getvalue()


def isobmff_declaring(data: bytes, width: int, height: int) -> bytes:
    """Patch the ``ispe`` (image spatial extents) box of a HEIC/AVIF file."""
    out = bytearray(data)
    at = out.find(b"ispe")
    out[at + 8 : at + 16] = struct.pack(">II", width, height)
    return bytes(out)


def heic_clap_height(data: bytes, height: int) -> bytes:
    """Patch the height of a HEIC's clean-aperture (``clap``) crop: the header then promises a size
    the decoder does not deliver (found by fuzzing)."""
    out = bytearray(data)
    at = out.find(b"clap")
    out[at + 12 : at + 16] = struct.pack(">I", height)
    return bytes(out)


def _zip_bytes() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.html", "<script>alert(1)</script>")
    return buf.getvalue()


def _psd_header() -> bytes:
    """A PSD file header (8BPS, version 1, 3 channels, 24x32, 8 bits, RGB) and empty sections."""
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 24, 32, 8, 3) + b"\0" * 12


# the corpus ----------------------------------------------------------------------------------
def _modes() -> list[Case]:
    c: list[Case] = []

    def ok(name: str, data: bytes, size: tuple[int, int], mode: str, fmt: str, what: str) -> None:
        c.append(Case(name, "mode", data, Decoded(size, mode, fmt), what))

    for mode in ("1", "L", "LA", "P", "RGB", "RGBA"):
        ok(f"png-{mode}", encode(noise(48, 32, mode), "PNG"), (48, 32), mode, "PNG", f"PNG in mode {mode}")
    p = noise(48, 32, "P")
    p.info["transparency"] = 0
    ok("png-P-transparency", encode(p, "PNG"), (48, 32), "P", "PNG", "palette, one index transparent")
    pa = Image.new("P", (48, 32))
    pa.putpalette([i % 256 for i in range(768)])
    pa.putdata([i % 256 for i in range(48 * 32)])
    ok(
        "png-P-alpha-palette",
        encode(pa, "PNG", transparency=bytes(range(256))),
        (48, 32),
        "P",
        "PNG",
        "palette with an alpha per entry (tRNS)",
    )
    ok("png-2bit-grey", encode(noise(48, 32, "L"), "PNG", bits=2), (48, 32), "L", "PNG", "2-bit grey")
    ok(
        "png-16bit-grey",
        encode(Image.fromarray(np.arange(48 * 32, dtype=np.uint16).reshape(32, 48) * 40), "PNG"),
        (48, 32),
        "I;16",
        "PNG",
        "16-bit grey",
    )
    for ct, kind, mode in ((2, "RGB", "RGB"), (4, "LA", "RGBA"), (6, "RGBA", "RGBA")):
        what = f"16-bit {kind} (Pillow keeps the high 8 bits, as {mode})"
        ok(f"png-16bit-{kind}", png16(50, 60, ct), (50, 60), mode, "PNG", what)
    ok(
        "png-interlaced",
        png_interlaced(np.asarray(noise(48, 32))),
        (48, 32),
        "RGB",
        "PNG",
        "Adam7 interlaced",
    )
    for mode in ("L", "RGB", "CMYK"):
        ok(
            f"jpeg-{mode}",
            encode(noise(64, 48, mode), "JPEG"),
            (64, 48),
            mode,
            "JPEG",
            f"JPEG in mode {mode}",
        )
    ok(
        "jpeg-progressive",
        encode(noise(64, 48), "JPEG", progressive=True),
        (64, 48),
        "RGB",
        "JPEG",
        "progressive JPEG",
    )
    ok(
        "jpeg-444",
        encode(noise(64, 48), "JPEG", subsampling=0),
        (64, 48),
        "RGB",
        "JPEG",
        "JPEG without chroma subsampling",
    )
    ok("webp-lossy", encode(noise(64, 48), "WEBP"), (64, 48), "RGB", "WEBP", "lossy WebP")
    ok(
        "webp-lossless-alpha",
        encode(noise(64, 48, "RGBA"), "WEBP", lossless=True),
        (64, 48),
        "RGBA",
        "WEBP",
        "lossless WebP with alpha",
    )
    ok("heic-RGB", heic(noise(64, 48)), (64, 48), "RGB", "HEIF", "HEIC")
    ok("heic-RGBA", heic(noise(64, 48, "RGBA")), (64, 48), "RGBA", "HEIF", "HEIC with alpha")
    if features.check("avif"):
        ok("avif-RGB", encode(noise(64, 48), "AVIF"), (64, 48), "RGB", "HEIF", "AVIF (sniffed as HEIF)")
    return c


def _bombs() -> list[Case]:
    too_large = ImageTooLargeError
    c = [
        Case(
            "png-declares-20000x20000",
            "bomb",
            png_declaring(20000, 20000),
            Refused(too_large, r"20000x20000 = 400\.0 MP"),
            "a 1x1 PNG whose header declares 400 MP",
        ),
        Case(
            "png-zlib-bomb-100MP",
            "bomb",
            png_zeros(10000, 10000, color_type=0),
            Refused(too_large, r"10000x10000"),
            "a real 100 MP grey PNG of zeros (100 MB of pixels in ~100 KB)",
        ),
        Case(
            "png-zlib-bomb-16MP",
            "bomb",
            png_zeros(4000, 4000, color_type=6),
            Decoded((4000, 4000), "RGBA", "PNG"),
            "a real 16 MP RGBA PNG of zeros in ~60 KB: within the limit, decoded within its budget",
        ),
        Case(
            "png-16bit-bomb-16MP",
            "bomb",
            png_zeros(4000, 4000, color_type=0, bit_depth=16),
            Decoded((4000, 4000), "I;16", "PNG"),
            "a 16 MP 16-bit grey PNG of zeros (was float64: 24 bytes a pixel)",
        ),
        Case(
            "png-iccp-bomb",
            "bomb",
            png_with_chunks([png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * 4_000_000))]),
            Refused(CorruptImageError, "MAX_TEXT_CHUNK"),
            "an ICC profile inflating to 4 MB (Pillow's limit is 1 MB)",
        ),
        Case(
            "png-ztxt-bomb",
            "bomb",
            png_with_chunks(
                [png_chunk(b"zTXt", b"k%d\0\0" % i + zlib.compress(b"a" * 1_000_000)) for i in range(6)]
            ),
            Refused(CorruptImageError, "text chunks"),
            "six text chunks inflating to 1 MB each (the limit is 4 MB in all)",
        ),
        Case(
            "jpeg-declares-65000x65000",
            "bomb",
            jpeg_declaring(encode(noise(64, 48), "JPEG"), 65000, 65000),
            Refused(too_large, r"65000x65000"),
            "a JPEG whose frame header declares 4.2 GP",
        ),
        Case(
            "jpeg-progressive-declares-3000x3000",
            "bomb",
            jpeg_declaring(encode(noise(64, 48), "JPEG", progressive=True), 3000, 3000),
            Decoded((3000, 3000), "RGB", "JPEG"),
            "a 2 KB progressive JPEG declaring 9 MP: decoded (grey where data is missing); libjpeg's "
            "whole-image coefficient buffer is charged to the budget",
        ),
        Case(
            "jpeg-scan-bomb",
            "bomb",
            jpeg_scan_bomb(150),
            Refused(CorruptImageError, r"160 scans; at most 100"),
            "a progressive JPEG with 160 scans (each a pass over the image)",
        ),
        Case(
            "webp-declares-16383x16383",
            "bomb",
            webp_animated(canvas=(16383, 16383)),
            Refused(too_large, r"16383x16383"),
            "an animated WebP whose canvas declares 268 MP",
        ),
        Case(
            "webp-lossless-declares-16384x16384",
            "bomb",
            webp_lossless_declaring(16384, 16384),
            Refused(too_large, r"16384x16384"),
            "a lossless WebP whose bitstream declares 268 MP",
        ),
        Case(
            "heic-declares-20000x20000",
            "bomb",
            isobmff_declaring(heic(noise(96, 80)), 20000, 20000),
            Refused(too_large, r"20000x20000"),
            "a HEIC whose ispe box declares 400 MP",
        ),
    ]
    if features.check("avif"):
        c.append(
            Case(
                "avif-declares-20000x20000",
                "bomb",
                isobmff_declaring(encode(noise(96, 80), "AVIF"), 20000, 20000),
                Refused(CorruptImageError, "header is broken or truncated"),
                "an AVIF whose ispe box declares 400 MP",
            )
        )
    return c


def _avif_broken() -> list[Case]:
    if not features.check("avif"):
        return []
    avif = encode(noise(64, 48), "AVIF")
    return [
        Case(
            "avif-unknown-item-type",
            "corrupt",
            avif.replace(b"av01Color", b"av02Color"),
            Refused(CorruptImageError, "header could not be read: .*image item"),
            "the primary item's type is unknown: Pillow's AVIF plugin raised RuntimeError (found by fuzzing)",
        ),
        Case(
            "avif-truncated",
            "truncated",
            avif[: len(avif) // 2],
            Refused(CorruptImageError, "HEIF"),
            "cut in half",
        ),
    ]


def _broken() -> list[Case]:
    jpeg = encode(noise(200, 100), "JPEG")
    png = encode(noise(200, 100), "PNG")
    webp = encode(noise(200, 100), "WEBP")
    heif = heic(noise(96, 80))
    mdat = heif.find(b"mdat") - 4
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF
    corrupt = CorruptImageError
    rng = np.random.default_rng(7)
    junk = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    return [
        Case("jpeg-header-only", "truncated", jpeg[:200], Refused(corrupt, "JPEG"), "the first 200 bytes"),
        Case(
            "jpeg-two-thirds",
            "truncated",
            jpeg[: len(jpeg) * 2 // 3],
            Refused(corrupt, "could not be decoded"),
            "cut in the entropy-coded data",
        ),
        Case(
            "png-cut-in-idat",
            "truncated",
            png[: len(png) // 2],
            Refused(corrupt, "could not be decoded"),
            "cut in the image data",
        ),
        Case("webp-truncated", "truncated", webp[: len(webp) // 2], Refused(corrupt, "WEBP"), "cut in half"),
        Case("heic-truncated", "truncated", heif[:600], Refused(corrupt, "HEIF"), "cut after 600 bytes"),
        Case(
            "heic-broken-mdat",
            "corrupt",
            heif[:mdat] + b"\0" * 8 + heif[mdat:],
            Refused(corrupt, "could not be decoded"),
            "8 bytes pushed in before the mdat box (pillow-heif raised EOFError)",
        ),
        Case(
            "heic-clap-mismatch",
            "corrupt",
            heic_clap_height(heic(noise(64, 48, "RGBA")), 53),
            Decoded((64, 51), "RGBA", "HEIF"),
            "the crop box says 64x53, libheif delivers 64x51: the size reported is the decoded one "
            "(it was the header's; found by fuzzing)",
        ),
        Case(
            "png-bad-ihdr-crc",
            "corrupt",
            bytes(bad_crc),
            Refused(corrupt, "PNG"),
            "the header chunk's CRC is wrong",
        ),
        Case(
            "png-zero-size",
            "corrupt",
            png_declaring(0, 0),
            Refused(corrupt, "PNG|empty size"),
            "declares 0x0",
        ),
        Case(
            "jpeg-magic-then-junk",
            "corrupt",
            b"\xff\xd8\xff" + junk,
            Refused(corrupt, "JPEG"),
            "JPEG magic followed by random bytes",
        ),
        Case(
            "png-signature-then-junk",
            "corrupt",
            b"\x89PNG\r\n\x1a\n" + junk,
            Refused(corrupt, "PNG"),
            "PNG signature followed by random bytes",
        ),
        Case(
            "webp-riff-then-junk",
            "corrupt",
            b"RIFF" + struct.pack("<I", 4004) + b"WEBP" + junk,
            Refused(corrupt, "WEBP"),
            "a RIFF/WEBP header followed by random bytes",
        ),
    ]


def _exif() -> list[Case]:
    c = []
    for o in range(1, 9):
        size = (48, 64) if o in (5, 6, 7, 8) else (64, 48)
        c.append(
            Case(
                f"jpeg-exif-orientation-{o}",
                "exif",
                jpeg_oriented(o),
                Decoded(size, "RGB", "JPEG", o),
                f"EXIF orientation {o}",
            )
        )
    malformed = [
        ("text", 2, 2, b"6\0\0\0", 1),
        ("bytes", 7, 4, b"\x06\0\0\0", 1),
        ("out-of-range", 4, 1, struct.pack("<I", 2**31), 1),
        ("zero", 3, 1, struct.pack("<HH", 0, 0), 1),
        ("rational", 5, 1, struct.pack("<I", 26), 6),
        ("float", 11, 1, struct.pack("<f", 6.0), 6),
        ("huge-count", 3, 0x3FFFFFFF, struct.pack("<I", 4096), 1),
    ]
    for name, kind, count, value, o in malformed:
        size = (48, 64) if o == 6 else (64, 48)
        c.append(
            Case(
                f"jpeg-exif-orientation-{name}",
                "exif",
                jpeg_with_exif(exif_orientation_entry(kind, count, value)),
                Decoded(size, "RGB", "JPEG", o),
                f"orientation tag of the wrong type or value ({name})",
            )
        )
    loop = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0) + struct.pack("<I", 8)
    c += [
        Case(
            "jpeg-exif-ifd-past-end",
            "exif",
            jpeg_with_exif(b"II*\x00" + struct.pack("<I", 60000)),
            Decoded((64, 48), "RGB", "JPEG"),
            "the first IFD's offset points past the end",
        ),
        Case(
            "jpeg-exif-ifd-loop",
            "exif",
            jpeg_with_exif(loop),
            Decoded((64, 48), "RGB", "JPEG"),
            "the IFD's next-IFD pointer points to itself",
        ),
        Case(
            "jpeg-exif-not-tiff",
            "exif",
            jpeg_with_exif(b"garbage, not a TIFF structure" * 10),
            Decoded((64, 48), "RGB", "JPEG"),
            "APP1 says Exif but holds no TIFF structure",
        ),
    ]
    exif6 = Image.Exif()
    exif6[0x0112] = 6
    c += [
        Case(
            "png-exif-orientation-6",
            "exif",
            encode(noise(64, 48), "PNG", exif=exif6.tobytes()),
            Decoded((48, 64), "RGB", "PNG", 6),
            "PNG eXIf chunk with orientation 6",
        ),
        Case(
            "webp-exif-orientation-8",
            "exif",
            encode(noise(64, 48), "WEBP", exif=_exif_bytes(8)),
            Decoded((48, 64), "RGB", "WEBP", 8),
            "WebP EXIF chunk with orientation 8",
        ),
        Case(
            "jpeg-exif-rotated-large",
            "exif",
            encode(noise(1200, 600), "JPEG", exif=exif6.tobytes()),
            Decoded((600, 1200), "RGB", "JPEG", 6),
            "a 1200x600 photo rotated by EXIF (written through a rotated view)",
        ),
    ]
    return c


def _exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _icc() -> list[Case]:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return [
        Case(
            "jpeg-icc-srgb",
            "icc",
            encode(noise(64, 48), "JPEG", icc_profile=srgb),
            Decoded((64, 48), "RGB", "JPEG"),
            "an sRGB ICC profile",
        ),
        Case(
            "jpeg-icc-garbage",
            "icc",
            encode(noise(64, 48), "JPEG", icc_profile=b"not a profile" * 100),
            Decoded((64, 48), "RGB", "JPEG"),
            "an ICC marker holding garbage (profiles are not applied)",
        ),
        Case(
            "jpeg-icc-12-segments",
            "icc",
            encode(noise(64, 48), "JPEG", icc_profile=b"\0" * 65000 * 12),
            Decoded((64, 48), "RGB", "JPEG"),
            "a 780 KB profile split over 12 APP2 segments",
        ),
        Case(
            "png-icc-srgb",
            "icc",
            encode(noise(64, 48), "PNG", icc_profile=srgb),
            Decoded((64, 48), "RGB", "PNG"),
            "an sRGB ICC profile",
        ),
    ]


def _animated() -> list[Case]:
    frames = [noise(50, 40, "RGBA", seed=s) for s in range(3)]
    return [
        Case(
            "png-animated",
            "animated",
            encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
            Decoded((50, 40), "RGBA", "PNG"),
            "APNG, 3 frames: the first is decoded",
        ),
        Case(
            "webp-animated",
            "animated",
            webp_animated(),
            Decoded((96, 80), "RGB", "WEBP"),
            "animated WebP, 3 frames: the first is decoded",
        ),
        Case(
            "jpeg-mpo",
            "animated",
            encode(noise(64, 48), "MPO", save_all=True, append_images=[noise(640, 480)]),
            Decoded((64, 48), "RGB", "JPEG"),
            "multi-picture JPEG: the first picture is decoded",
        ),
    ]


def _polyglots() -> list[Case]:
    jpeg = encode(noise(64, 48), "JPEG")
    png = encode(noise(64, 48), "PNG")
    gif = encode(noise(64, 48), "GIF")
    return [
        Case(
            "jpeg-plus-zip",
            "polyglot",
            jpeg + _zip_bytes(),
            Decoded((64, 48), "RGB", "JPEG"),
            "a JPEG followed by a ZIP archive: the JPEG is decoded, the rest ignored",
        ),
        Case(
            "png-plus-html",
            "polyglot",
            png + b"<html><script>alert(1)</script></html>",
            Decoded((64, 48), "RGB", "PNG"),
            "a PNG with trailing HTML",
        ),
        Case(
            "gif-plus-zip",
            "polyglot",
            gif + _zip_bytes(),
            Refused(UnsupportedFormatError, "GIF images are not accepted"),
            "GIFAR: a GIF followed by a ZIP",
        ),
        Case(
            "pdf-with-jpeg",
            "polyglot",
            b"%PDF-1.4\n1 0 obj << /Length "
            + str(len(jpeg)).encode()
            + b" >> stream\n"
            + jpeg
            + b"\nendstream\n%%EOF\n",
            Refused(UnsupportedFormatError, "PDF images are not accepted"),
            "a PDF whose stream is a JPEG",
        ),
        Case(
            "html-with-png",
            "polyglot",
            b"<!doctype html><img src=x onerror=alert(1)>" + png,
            Refused(UnsupportedFormatError, "Not a recognised image"),
            "HTML with a PNG after it",
        ),
        Case(
            "jpeg-magic-then-psd",
            "polyglot",
            b"\xff\xd8\xff" + _psd_header(),
            Refused(CorruptImageError, "JPEG"),
            "JPEG magic in front of a PSD",
        ),
        Case(
            "png-signature-then-gif",
            "polyglot",
            b"\x89PNG\r\n\x1a\n" + gif,
            Refused(CorruptImageError, "PNG"),
            "PNG signature in front of a GIF: no GIF decoder is reached",
        ),
    ]


def _tiny() -> list[Case]:
    return [
        Case("zero-bytes", "tiny", b"", Refused(EmptyImageError, "empty"), "an empty file"),
        Case("one-byte", "tiny", b"\xff", Refused(UnsupportedFormatError, "Not a recognised image"), "0xFF"),
        Case("jpeg-magic-only", "tiny", b"\xff\xd8\xff", Refused(CorruptImageError, "JPEG"), "3 bytes"),
        Case(
            "png-1x1",
            "tiny",
            encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
            Decoded((1, 1), "RGB", "PNG"),
            "one pixel",
        ),
        Case(
            "jpeg-1x1",
            "tiny",
            encode(Image.new("RGB", (1, 1), (9, 9, 9)), "JPEG"),
            Decoded((1, 1), "RGB", "JPEG"),
            "one pixel",
        ),
        Case(
            "jpeg-1x10000",
            "tiny",
            encode(noise(1, 10000), "JPEG"),
            Decoded((1, 10000), "RGB", "JPEG"),
            "one column",
        ),
        Case(
            "png-10000x1",
            "tiny",
            encode(noise(10000, 1), "PNG"),
            Decoded((10000, 1), "RGB", "PNG"),
            "one row",
        ),
    ]


def _formats() -> list[Case]:
    img = noise(50, 40)
    refused = UnsupportedFormatError
    c = [
        Case(
            f"{fmt.lower()}-refused",
            "format",
            encode(img, fmt),
            Refused(refused, f"{fmt} images are not accepted"),
            fmt,
        )
        for fmt in ("GIF", "BMP", "TIFF", "ICO", "PDF", "EPS")
    ]
    c += [
        Case("psd-refused", "format", _psd_header(), Refused(refused, "PSD images are not accepted"), "PSD"),
        Case(
            "tga-refused",
            "format",
            encode(img, "TGA"),
            Refused(refused, "Not a recognised image"),
            "TGA (no magic bytes: only sniffing keeps it from Pillow's TGA parser)",
        ),
        Case("qoi-refused", "format", encode(img, "QOI"), Refused(refused, "Not a recognised image"), "QOI"),
        Case(
            "jpeg2000-refused",
            "format",
            encode(img, "JPEG2000"),
            Refused(refused, "Not a recognised image"),
            "JPEG 2000",
        ),
    ]
    return c


def _text() -> list[Case]:
    return [
        Case(
            "text-named-jpg",
            "text",
            b"hello, this is not a photo\n" * 10,
            Refused(UnsupportedFormatError, "Not a recognised image"),
            "a text file named photo.jpg",
        ),
        Case(
            "svg-named-jpg",
            "text",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            Refused(UnsupportedFormatError, "Not a recognised image"),
            "an SVG with a script",
        ),
        Case(
            "base64-jpeg",
            "text",
            base64.b64encode(encode(noise(32, 24), "JPEG")),
            Refused(UnsupportedFormatError, "Not a recognised image"),
            "a JPEG sent base64-encoded as raw bytes",
        ),
    ]


@cache
def cases() -> tuple[Case, ...]:
    """Every case, built once per process (about a second)."""
    out = (
        *_modes(),
        *_bombs(),
        *_broken(),
        *_avif_broken(),
        *_exif(),
        *_icc(),
        *_animated(),
        *_polyglots(),
        *_tiny(),
    )
    out = (*out, *_formats(), *_text())
    names = [c.name for c in out]
    assert len(names) == len(set(names)), "case names must be unique"
    return out


def by_name() -> dict[str, Case]:
    return {c.name: c for c in cases()}
