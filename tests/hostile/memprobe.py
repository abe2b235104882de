"""Peak memory of decoding, measured as resident memory in a fresh process (Linux).

tracemalloc sees numpy's and Python's allocations but not Pillow's image memory nor the C
decoders' buffers (libjpeg, libpng/zlib, libwebp, libheif allocate with plain ``malloc``), so the
total is measured as resident set size: the process's high-water mark (``VmHWM``) is reset through
``/proc/self/clear_refs`` before each decode and read after it, minus the resident size at the
reset. glibc's adaptive mmap threshold is pinned (``MALLOC_MMAP_THRESHOLD_``) so that freed
buffers go back to the system instead of hiding in the heap, where a later decode would reuse
them unseen.

Usage::

    .venv/bin/python tests/hostile/memprobe.py modes [--width 4000 --height 3000]   # a table
    .venv/bin/python tests/hostile/memprobe.py convert                            # every Pillow mode
    .venv/bin/python tests/hostile/memprobe.py corpus                             # JSON, hostile cases

Tests call :func:`probe`, which runs this file in a subprocess and returns its JSON.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MMAP_THRESHOLD = 64 * 1024

FILE_MODES: tuple[tuple[str, str], ...] = (
    ("JPEG", "L"),
    ("JPEG", "RGB"),
    ("JPEG", "CMYK"),
    ("JPEG", "RGB progressive"),
    ("JPEG", "RGB orientation 6"),
    ("PNG", "1"),
    ("PNG", "L"),
    ("PNG", "LA"),
    ("PNG", "P"),
    ("PNG", "P transparency"),
    ("PNG", "RGB"),
    ("PNG", "RGBA"),
    ("PNG", "I;16"),
    ("PNG", "RGBA 16-bit"),
    ("WEBP", "RGB"),
    ("WEBP", "RGBA"),
    ("HEIF", "RGB"),
    ("HEIF", "RGBA"),
    ("AVIF", "RGB"),
)
"""(container, what) pairs measured by ``modes``: every mode the accepted containers decode to."""

CONVERT_MODES: tuple[str, ...] = (
    "1",
    "L",
    "LA",
    "La",
    "P",
    "P transparency",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "I;16",
    "I;16L",
    "I;16B",
    "I;16N",
    "F",
)
"""Every mode Pillow can hand to :func:`model.imaging.to_rgb_array`."""


# in the probe process ----------------------------------------------------------------------
def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} missing from /proc/self/status")


def peak_bytes(fn: Callable[[], object]) -> tuple[int, object]:
    """Run ``fn`` and return (peak resident bytes above the start, its result or ImageError)."""
    from model.imaging import ImageError

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    base = _status("VmRSS")
    try:
        result: object = fn()
    except ImageError as exc:
        result = exc
    return _status("VmHWM") - base, result


def _recorder() -> Any:
    from model.imaging import DecodeBudget

    class Recorder(DecodeBudget):
        """A budget without limit that remembers what decoding reserved."""

        charged = 0

        def acquire(self, nbytes: int) -> None:
            self.charged = nbytes
            super().acquire(nbytes)

    return Recorder(2**62)


def _pattern(width: int, height: int, mode: str) -> Any:
    """A textured image (gradients plus noise): cheap to encode, not trivially compressible."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    rgba = np.stack([x % 256, y % 256, (x + y) % 256, (x * 3) % 256], axis=-1).astype(np.uint8)
    rgba[..., :3] ^= rng.integers(0, 16, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    if mode == "RGBA":
        return img
    if mode == "LA":
        return Image.merge("LA", (img.convert("L"), img.getchannel("A")))
    return img.convert("RGB").convert(mode)


def _file(container: str, what: str, width: int, height: int) -> bytes:
    import numpy as np
    from PIL import Image

    mode = what.split()[0]
    buf = io.BytesIO()
    if container == "PNG" and what == "I;16":
        arr = (np.arange(width * height, dtype=np.uint32) % 65536).astype(np.uint16).reshape(height, width)
        Image.fromarray(arr).save(buf, "PNG", compress_level=1)
        return buf.getvalue()
    if what == "RGBA 16-bit":
        sys.path.insert(0, str(ROOT / "tests"))
        from hostile.images import png_zeros

        return png_zeros(width, height, color_type=6, bit_depth=16)
    img = _pattern(width, height, mode)
    if what == "P transparency":
        img.info["transparency"] = 0
    if container == "HEIF":
        import pillow_heif

        pillow_heif.from_pillow(img).save(buf, quality=50, enc_params={"preset": "ultrafast"})
        return buf.getvalue()
    kwargs: dict[str, object] = {}
    if container == "PNG":
        kwargs["compress_level"] = 1
    if container == "WEBP":
        kwargs = {"lossless": True, "method": 0} if mode == "RGBA" else {"quality": 50, "method": 0}
    if what.endswith("progressive"):
        kwargs["progressive"] = True
    if what.endswith("orientation 6"):
        exif = Image.Exif()
        exif[0x0112] = 6
        kwargs["exif"] = exif.tobytes()
    if container == "AVIF":
        kwargs["speed"] = 10
    img.save(buf, container, **kwargs)
    return buf.getvalue()


def measure_decode(data: bytes, **kwargs: Any) -> dict[str, Any]:
    """Decode ``data`` once with a recording budget: peak bytes, charged bytes, outcome."""
    from model.imaging import DecodedImage, decode_image

    budget = _recorder()
    peak, result = peak_bytes(lambda: decode_image(data, budget=budget, **kwargs))
    row: dict[str, Any] = {"peak": peak, "charged": budget.charged}
    if isinstance(result, DecodedImage):
        h, w = result.pixels.shape[:2]
        row |= {"pixels": w * h, "mode": result.source_mode, "outcome": "decoded"}
    else:
        row |= {"pixels": 0, "outcome": getattr(result, "code", "?")}
    return row


def run_modes(width: int, height: int) -> list[dict[str, Any]]:
    from model.imaging import bytes_per_pixel

    rows = []
    for container, what in FILE_MODES:
        try:
            data = _file(container, what, width, height)
        except (OSError, KeyError, ValueError) as exc:  # AVIF without libavif ...
            rows.append({"container": container, "what": what, "skipped": str(exc)})
            continue
        row = measure_decode(data)
        fmt = "HEIF" if container == "AVIF" else container
        row |= {"container": container, "what": what, "stated": bytes_per_pixel(fmt, row["mode"])}
        rows.append(row)
        del data
    return rows


def _mode_image(mode: str, width: int, height: int) -> Any:
    from PIL import Image

    if mode == "P transparency":
        img = Image.new("P", (width, height), 3)
        img.info["transparency"] = 3
        return img
    fill: Any = {"1": 1, "F": 1.5, "I": 300, "P": 3, "PA": (3, 128), "La": (9, 128)}.get(mode)
    if fill is None:
        fill = 1000 if mode.startswith("I;16") else (9,) * Image.getmodebands(mode)
    img = Image.new(mode, (width, height), fill)
    if mode == "PA":
        img.putpalette(list(range(256)) * 3)
    return img


def run_convert(width: int, height: int) -> list[dict[str, Any]]:
    from model.imaging import to_rgb_array

    rows = []
    for mode in CONVERT_MODES:
        for orientation in (1, 6):
            img = _mode_image(mode, width, height)
            peak, out = peak_bytes(lambda img=img, o=orientation: to_rgb_array(img, o))
            shape = getattr(out, "shape", None)
            rows.append(
                {
                    "mode": mode,
                    "orientation": orientation,
                    "peak": peak,
                    "pixels": width * height,
                    "shape": shape,
                }
            )
            del img, out
    return rows


def run_corpus() -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile.images import cases

    return {c.name: measure_decode(c.data) for c in cases()}


# the caller's side ---------------------------------------------------------------------------
def available() -> bool:
    """Whether peak resident memory can be reset and read here (Linux with /proc)."""
    clear = Path("/proc/self/clear_refs")
    return clear.exists() and os.access(clear, os.W_OK)


def probe(kind: str, *args: str, timeout: float = 600) -> Any:
    """Run a measurement in a fresh interpreter and return its JSON."""
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_ARENA_MAX": "2"}
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), kind, "--json", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
    return json.loads(out.stdout)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| container | mode | peak measured, bytes/pixel | stated (bytes_per_pixel) | reserved, bytes/pixel |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['container']} | {r['what']} | skipped: {r['skipped']} | | |")
            continue
        px = max(r["pixels"], 1)
        lines.append(
            f"| {r['container']} | {r['what']} | {r['peak'] / px:.2f} | {r['stated']} | {r['charged'] / px:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["modes", "convert", "corpus"])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--json", action="store_true", help="print JSON (what the tests read)")
    args = parser.parse_args()
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # re-run with the allocator pinned
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
        os.environ["MALLOC_ARENA_MAX"] = "2"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if args.kind == "modes":
        rows: Any = run_modes(args.width, args.height)
    elif args.kind == "convert":
        rows = run_convert(args.width, args.height)
    else:
        rows = run_corpus()
    if args.json:
        print(json.dumps(rows))
    elif args.kind == "modes":
        print(f"{args.width}x{args.height}, peak resident memory per decoded pixel\n")
        print(_table(rows))
    elif args.kind == "convert":
        for r in rows:
            print(
                f"{r['mode']:16s} orientation {r['orientation']}: {r['peak'] / r['pixels']:.2f} bytes/pixel"
            )
    else:
        for name, r in rows.items():
            print(
                f"{name:40s} {r['outcome']:16s} peak {r['peak'] / 2**20:7.1f} MiB, reserved {r['charged'] / 2**20:7.1f} MiB"
            )


if __name__ == "__main__":
    main()
