"""``make bench``: every performance figure of this machine in one run, side by side.

Usage: ``python -m benchmarks.harness [--bundle DIR] [--label NAME] [--preset full|smoke]``

Writes ``benchmarks/results/<YYYY-MM-DD>-<label>.json`` and the generated table of
``docs/PERFORMANCE.md`` (between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``). Sections,
in order (``--sections`` runs some only):

1. ``model``: the model alone, ONNX Runtime fp32 and INT8 vs PyTorch eager (``model_only.py``);
2. ``decode``: full vs reduced-scale decoding and preprocessing per photo (``pipeline.py``);
3. ``ceiling``: decode + preprocess + model in process, overlapped and not, and the compute
   limit (``pipeline.py``);
4. ``http`` and 5. ``cold_start``: ``authlens serve`` vs the naive baseline over loopback, cold
   start and memory (``endtoend.py``, ``baseline_server.py``);
6. ``training``: photos per second of the sneakers and synthetic configs (``training_speed.py``).

The bundle is ``--bundle``, else ``bundles/sneakers``, else a random-weight stand-in of
``configs/sneakers.yaml`` (``subject.py``). The run records whether other processes used the CPU
meanwhile (``machine.py``): figures from a busy machine are marked as such. Run it on a quiet
machine: ``flock /tmp/authlens-heavy.lock make bench``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model.imaging import DEFAULT_MAX_PIXELS

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "PERFORMANCE.md"
SECTIONS = ("model", "decode", "ceiling", "http", "cold_start", "training")


@dataclass(frozen=True)
class Preset:
    """Durations and sizes of a run: ``full`` is the measured run; ``quick`` the same photos, sizes and
    levels with short windows (checks a machine end to end); ``smoke`` the test's seconds."""

    name: str
    model_batches: tuple[int, ...] = (1, 16)
    model_budget_s: float = 2.0  # per engine and batch size
    model_min_runs: int = 5
    finetuned: bool = True  # also time the ood_features="finetuned" graph (one backbone pass)
    decode_photos: tuple[tuple[str, int, int], ...] = (
        ("JPEG", 4000, 3000),
        ("JPEG", 1600, 1200),
        ("JPEG", 816, 612),
        ("PNG", 1600, 1200),
        ("WEBP", 1600, 1200),
        ("HEIC", 1600, 1200),
        ("HEIC", 4000, 3000),
    )
    decode_budget_s: float = 1.5  # per figure
    http_sizes: tuple[tuple[int, int], ...] = ((1600, 1200), (4000, 3000))  # small first
    ceiling_s: float = 6.0  # per thread split and photo
    ceiling_warmup_s: float = 1.5
    http_levels: tuple[int, ...] = (1, 4, 16, 64)
    http_s: float = 10.0
    http_warmup_s: float = 2.0
    batch_images: int = 64
    batch_s: float = 15.0
    half_load_s: float = 10.0
    cold_start_extra: int = 2
    train_configs: tuple[str, ...] = ("configs/sneakers.yaml", "configs/synthetic.yaml")
    train_batches: int = 6
    train_warm_batches: int = 2
    train_batch_size: int | None = None  # None: the config's
    train_image_size: int | None = None  # None: the config's
    stand_in_size: int | None = None  # None: the config's (224)


PRESETS = {
    "full": Preset("full"),
    "quick": Preset(  # the full run's photos, sizes and levels with short windows: checks it works
        "quick",
        model_budget_s=0.3,
        model_min_runs=2,
        decode_budget_s=0.2,
        ceiling_s=1.5,
        ceiling_warmup_s=0.5,
        http_s=2.0,
        http_warmup_s=0.5,
        batch_s=3.0,
        half_load_s=2.0,
        cold_start_extra=1,
        train_batches=1,
        train_warm_batches=1,
    ),
    "smoke": Preset(
        "smoke",
        model_budget_s=0.15,
        model_min_runs=2,
        finetuned=False,
        decode_photos=(
            ("JPEG", 640, 480),
            ("JPEG", 320, 240),
            ("PNG", 320, 240),
            ("WEBP", 320, 240),
            ("HEIC", 320, 240),
        ),
        decode_budget_s=0.05,
        http_sizes=((320, 240), (640, 480)),
        ceiling_s=0.4,
        ceiling_warmup_s=0.1,
        http_levels=(1, 4),
        http_s=0.6,
        http_warmup_s=0.1,
        batch_images=8,
        batch_s=0.6,
        half_load_s=0.6,
        cold_start_extra=0,
        train_configs=("configs/sneakers.yaml",),
        train_batches=1,
        train_warm_batches=0,
        train_batch_size=2,
        train_image_size=64,
        stand_in_size=64,
    ),
}


def _say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _photos(preset: Preset) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The decode photos by name (``JPEG 1600x1200``) and the HTTP JPEGs (small first)."""
    from serving.bench import encode_photo, photo_pixels

    pixels: dict[tuple[int, int], Any] = {}

    def make(fmt: str, w: int, h: int) -> bytes:
        if (w, h) not in pixels:
            pixels[(w, h)] = photo_pixels(w, h)
        return encode_photo(pixels[(w, h)], fmt)

    decode = {f"{fmt} {w}x{h}": make(fmt, w, h) for fmt, w, h in preset.decode_photos}
    http = {f"{w}x{h}": decode.get(f"JPEG {w}x{h}") or make("JPEG", w, h) for w, h in preset.http_sizes}
    return decode, http


def _training(preset: Preset) -> list[dict[str, Any]]:
    cmd = [
        sys.executable, "-m", "benchmarks.training_speed",
        "--batches", str(preset.train_batches), "--warm-batches", str(preset.train_warm_batches),
    ]  # fmt: skip
    for config in preset.train_configs:
        cmd += ["--config", config]
    if preset.train_batch_size:
        cmd += ["--batch-size", str(preset.train_batch_size)]
    if preset.train_image_size:
        cmd += ["--image-size", str(preset.train_image_size)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"training_speed failed ({done.returncode}): {done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def run_harness(
    *,
    preset: Preset,
    bundle: Path | None = None,
    weights: Path | None = None,
    label: str | None = None,
    sections: tuple[str, ...] = SECTIONS,
    work: Path | None = None,
) -> dict[str, Any]:
    """Run the sections and return the report (what the JSON file holds).

    A section that fails records ``{"error": ...}`` and the run goes on.
    """
    from benchmarks.machine import CpuMonitor, describe_machine
    from benchmarks.subject import resolve_subject

    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.perf_counter()
    monitor = CpuMonitor()
    monitor.start()
    report: dict[str, Any] = {
        "schema": 1,
        "date": dt.date.today().isoformat(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "preset": asdict(preset),
        "machine": describe_machine(label),
        "section_seconds": {},
    }
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="authlens-bench-") as tmp:
        work = work or Path(tmp)
        with monitor.section("setup"):
            _say("bundle: resolving (a stand-in is exported when bundles/sneakers is absent)")
            subject = resolve_subject(bundle, work, image_size=preset.stand_in_size)
            weights = weights or subject.weights
            b = subject.bundle()
            spec = b.manifest.input
            report["subject"] = {
                "bundle": str(subject.bundle_dir),
                "origin": subject.origin,
                "note": subject.note,
                "name": b.manifest.name,
                "version": b.manifest.version,
                "sha256": b.sha256,
                "input": [spec.height, spec.width],
                "draft_size": spec.draft_size,
                "resize": spec.resize,
                "flags": len(b.manifest.flags),
                "int8_in_bundle": b.manifest.int8 is not None,
                "eager_weights": "the bundle's" if weights is not None else "random (same architecture)",
            }
            _say(f"bundle: {subject.note}")
            _say("photos: generating")
            decode_photos, http_photos = _photos(preset)
        report["section_seconds"]["setup"] = round(time.perf_counter() - started, 1)

        def section(name: str, fn: Callable[[], Any]) -> None:
            if name not in sections:
                return
            _say(f"section {name}")
            t = time.perf_counter()
            with monitor.section(name):
                try:
                    report[name] = fn()
                except Exception as exc:  # one failed section must not lose the others
                    traceback.print_exc()
                    report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            report["section_seconds"][name] = round(time.perf_counter() - t, 1)

        from benchmarks.model_only import model_section
        from benchmarks.pipeline import ceiling_section, decode_section

        section(
            "model",
            lambda: model_section(
                b,
                weights=weights,
                threads=cores,
                batches=preset.model_batches,
                budget_s=preset.model_budget_s,
                min_runs=preset.model_min_runs,
                finetuned=preset.finetuned,
                work=work / "model",
            ),
        )
        from serving.predictor import Predictor

        def predictor_for(threads: int) -> Predictor:
            """The served predictor as authlens serve builds it (warmed), with ``threads`` ORT threads."""
            p = Predictor(b, threads=threads, max_pixels=DEFAULT_MAX_PIXELS)
            p.warmup()
            return p

        predictor = predictor_for(cores)  # authlens serve's default: one ORT thread per core
        section("decode", lambda: decode_section(predictor, decode_photos, budget_s=preset.decode_budget_s))
        decode_rows = report.get("decode") if isinstance(report.get("decode"), list) else []
        model = report.get("model") if isinstance(report.get("model"), dict) else None
        ceiling_photos = {name: http_photos[name] for name in http_photos}
        section(
            "ceiling",
            lambda: ceiling_section(
                lambda t: predictor if t == cores else predictor_for(t),
                ceiling_photos,
                [
                    {**r, "photo": r["photo"].removeprefix("JPEG ")}
                    for r in decode_rows or []
                    if r["format"] == "JPEG"
                ],
                model,
                seconds=preset.ceiling_s,
                warmup_s=preset.ceiling_warmup_s,
                batch=max(preset.model_batches),
            ),
        )
        if "http" in sections or "cold_start" in sections:
            from benchmarks.endtoend import http_section

            t = time.perf_counter()
            with monitor.section("http"):
                try:
                    report["http"], report["cold_start"] = http_section(
                        subject.bundle_dir,
                        weights,
                        http_photos,
                        levels=preset.http_levels,
                        seconds=preset.http_s,
                        warmup_s=preset.http_warmup_s,
                        batch_images=preset.batch_images,
                        batch_s=preset.batch_s,
                        half_load_s=preset.half_load_s,
                        cold_start_extra=preset.cold_start_extra,
                        progress=_say,
                    )
                except Exception as exc:
                    traceback.print_exc()
                    report["http"] = report["cold_start"] = {"error": f"{type(exc).__name__}: {exc}"}
            report["section_seconds"]["http"] = round(time.perf_counter() - t, 1)
        section("training", lambda: _training(preset))
    monitor.stop()
    report["contention"] = monitor.report()
    report["duration_s"] = round(time.perf_counter() - started, 1)
    from benchmarks.report import targets

    report["targets"] = targets(report)
    return report


def results_path(results_dir: Path, report: dict[str, Any]) -> Path:
    """``<results_dir>/<YYYY-MM-DD>-<label>.json`` (label sanitised to ``[A-Za-z0-9._-]``)."""
    label = "".join(c if c.isalnum() or c in "._-" else "-" for c in report["machine"]["label"])
    return results_dir / f"{report['date']}-{label}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, default=None, help="Bundle (default bundles/sneakers, else a stand-in)."
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="Network state dict for the eager figures."
    )
    parser.add_argument("--label", default=None, help="Machine label in the results name (default hostname).")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"Comma-separated subset of {SECTIONS}."
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--doc", type=Path, default=DOC, help="Markdown file whose generated block is replaced."
    )
    parser.add_argument("--no-doc", action="store_true", help="Do not touch the markdown file.")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; allowed: {', '.join(SECTIONS)}")

    from benchmarks.report import render, update_doc

    report = run_harness(
        preset=PRESETS[args.preset],
        bundle=args.bundle,
        weights=args.weights,
        label=args.label,
        sections=sections,
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = results_path(args.results_dir, report)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    try:
        shown = path.resolve().relative_to(ROOT)
    except ValueError:
        shown = path
    block = render(report, source=str(shown))
    print(block)
    if not args.no_doc:
        update_doc(args.doc, block)
        _say(f"updated {args.doc}")
    _say(f"wrote {path} in {report['duration_s']:.0f} s")
    if not report["contention"]["quiet"]:
        _say(
            "WARNING: other processes used the CPU during the run; the figures are distorted (see contention)"
        )
    failed = [k for k in SECTIONS if isinstance(report.get(k), dict) and "error" in report[k]]
    if failed:
        _say(f"sections failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
