"""Coverage-guided fuzzing of the one decoding path (``model.imaging.decode_image``) with atheris.

Usage::

    make fuzz                                            # FUZZ_SECONDS=60 by default
    .venv/bin/python benchmarks/fuzz_decode.py -max_total_time=60 [libFuzzer flags] [corpus dirs]

The corpus lives in ``runs/fuzz/decode/corpus`` (git-ignored), seeded with every file of the
hostile corpus (``tests/hostile/images.py``) of at most 64 KB; crashes are written to
``runs/fuzz/decode/crash-<sha1>``. The first byte of each input picks the options (reduced-scale
JPEG decoding or not); the rest is the file. A crash is any of: an exception other than
:class:`model.imaging.ImageError`, decoded pixels that are not ``(H, W, 3)`` uint8 matching the
reported size and orientation, a budget reservation not given back, an input over ``-timeout``
seconds, or the process over ``-rss_limit_mb``. Photos are limited to 2 MP so that memory stays
far below that limit unless something is wrong.

Replay a crash: ``.venv/bin/python benchmarks/fuzz_decode.py runs/fuzz/decode/crash-<sha1>``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "fuzz" / "decode"
MAX_PIXELS = 2_000_000
DRAFT_SIZES = (None, 64, 224)

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
with atheris.instrument_imports():
    from PIL import Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401

    import model.imaging as imaging

BUDGET = imaging.DecodeBudget(1 << 30, max_wait_s=0)


def one_input(data: bytes) -> None:
    if not data:
        return
    draft = DRAFT_SIZES[data[0] % len(DRAFT_SIZES)]
    photo = data[1:]
    try:
        decoded = imaging.decode_image(photo, max_pixels=MAX_PIXELS, draft_size=draft, budget=BUDGET)
    except imaging.ImageError as exc:
        if not exc.code or not exc.message:
            raise AssertionError(f"an ImageError without code or message: {exc!r}") from None
        return
    finally:
        if BUDGET.in_use:
            raise AssertionError(f"{BUDGET.in_use} bytes of the decode budget were not given back")
    pixels = decoded.pixels
    h, w = pixels.shape[:2]
    if pixels.dtype != "uint8" or pixels.ndim != 3 or pixels.shape[2] != 3 or not pixels.flags.c_contiguous:
        raise AssertionError(f"decoded pixels are {pixels.dtype}{pixels.shape}")
    if not 1 <= decoded.exif_orientation <= 8 or min(h, w) < 1:
        raise AssertionError(f"orientation {decoded.exif_orientation}, pixels {pixels.shape}")
    ow, oh = decoded.original_size  # oriented, like the pixels: one DCT scale fits both axes
    scales = (1,) if draft is None else (1, 2, 4, 8)
    if not any(w == -(-ow // s) and h == -(-oh // s) for s in scales):
        raise AssertionError(f"original size {decoded.original_size} does not fit pixels {pixels.shape}")


def _seed(corpus: Path) -> None:
    from hostile.images import cases

    corpus.mkdir(parents=True, exist_ok=True)
    for case in cases():
        if len(case.data) <= 65536:
            for d in range(2):  # full decode and reduced-scale decode
                (corpus / f"seed-{case.name}-{d}").write_bytes(bytes([d * 2]) + case.data)


def main() -> None:
    warnings.simplefilter("ignore")  # Pillow warns about every malformed EXIF block
    args = sys.argv[1:]
    replay = [a for a in args if not a.startswith("-") and Path(a).is_file()]
    if not replay and not [a for a in args if not a.startswith("-")]:
        corpus = OUT / "corpus"
        _seed(corpus)
        args.append(str(corpus))
    defaults = {
        "-max_len": "65537",
        "-timeout": "10",
        "-rss_limit_mb": "1536",
        "-artifact_prefix": f"{OUT}/",
        "-print_final_stats": "1",
    }
    for flag, value in defaults.items():
        if not any(a.startswith(flag + "=") for a in args):
            args.insert(0, f"{flag}={value}")
    OUT.mkdir(parents=True, exist_ok=True)
    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
