"""Stream scoring, measured: speed as a multiple of real time and how well segments follow the
products on screen, on a recording generated here with known segments.

Usage: ``python benchmarks/bench_video.py --bundle BUNDLE [--height 720] [--fps 25] [--seconds 120]
[--sample-fps 2] [--source sneakers|synthetic] [--out video.json]``

* **The recording.** A sequence of scenes, each one product photo for 3 to 9 s (seeded, whole frames, so cuts fall anywhere between
  two samples) centred on a
  16:9 backdrop of the chosen height, with a hand-held shake (every frame shifted by up to 6 px)
  and sensor noise, encoded as H.264 (libx264, ``veryfast``, CRF 23) at ``--fps``. Consecutive
  scenes always show different photos. ``sneakers``: photos of the real sneakers
  (``../shared/data/sneakers-nike``, read in place; genuine and counterfeit alternate at random);
  ``synthetic``: the training generator's product photos (needs ``training``).
* **Speed.** :func:`serving.video.analysis.analyse_video` with ``predictor.infer`` as scorer, as
  ``authlens score-video`` runs it: seconds of video per second of wall time
  (``processing.realtime_factor`` of the report), and the share spent in the model.
* **Segments.** A scene is *found* when one segment starts and ends within the tolerance (two
  sampling intervals, as the tests use) of the scene's start and end. Extra segments are cuts
  where there is none. The verdict of each found segment is compared with the verdict the same
  photo gets when scored as a photo (``Predictor.score_item``), and with the photo's label.

The encoding is not timed; the scoring run is.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.predictor import Predictor  # noqa: E402
from serving.video.analysis import VideoOptions, analyse_video  # noqa: E402

SNEAKERS = ROOT.parent / "shared" / "data" / "sneakers-nike"
JITTER = 6


@dataclass(frozen=True)
class Scene:
    start_s: float
    end_s: float
    photo: np.ndarray  # (s, s, 3) uint8, already at the size shown
    jpeg: bytes  # the photo as a listing would carry it (for the photo verdict)
    label: str


def _photos(source: str, n: int, side: int, seed: int) -> list[tuple[np.ndarray, bytes, str]]:
    rng = np.random.default_rng(seed)
    out = []
    if source == "sneakers":
        files = sorted(SNEAKERS.glob("*/*.jpg"))
        for i in rng.choice(len(files), size=n, replace=False):
            f = files[int(i)]
            img = Image.open(f).convert("RGB")
            out.append(
                (
                    np.asarray(img.resize((side, side), Image.Resampling.BILINEAR)),
                    f.read_bytes(),
                    f.parent.name,
                )
            )
    else:
        from training.data.synth import synth_photo

        for k in range(n):
            ph = synth_photo(seed, k, k, 512)
            img = Image.fromarray(ph.pixels)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=92)
            label = ph.item.label
            out.append(
                (np.asarray(img.resize((side, side), Image.Resampling.BILINEAR)), buf.getvalue(), label)
            )
    return out


def make_scenes(source: str, seconds: float, height: int, fps: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    durations: list[float] = []
    while sum(durations) < seconds:  # 3 to 9 s, whole frames: cuts fall anywhere between samples
        durations.append(round(float(rng.uniform(3.0, 9.0)) * fps) / fps)
    durations[-1] = max(1.0, round((durations[-1] - (sum(durations) - seconds)) * fps) / fps)
    side = round(height * 0.9) // 2 * 2
    photos = _photos(source, min(len(durations), 24), side, seed)
    scenes, t, last = [], 0.0, -1
    for d in durations:
        pick = int(rng.integers(0, len(photos)))
        while pick == last:
            pick = int(rng.integers(0, len(photos)))
        last = pick
        pixels, jpeg, label = photos[pick]
        scenes.append(Scene(t, t + d, pixels, jpeg, label))
        t += d
    return scenes


def write_recording(path: Path, scenes: list[Scene], *, height: int, fps: int, seed: int) -> None:
    """Encode the scenes frame by frame (never all frames in memory)."""
    import av

    width = round(height * 16 / 9) // 2 * 2
    rng = np.random.default_rng(seed + 1)
    backdrop = np.full((height, width, 3), (58, 54, 60), dtype=np.uint8)
    noise = [rng.normal(0, 3, size=(height, width, 3)).astype(np.int16) for _ in range(4)]
    total = round(scenes[-1].end_s * fps)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(2 * fps)}
        s = 0
        for i in range(total):
            t = i / fps
            while s + 1 < len(scenes) and t >= scenes[s].end_s - 1e-9:
                s += 1
            photo = scenes[s].photo
            frame = backdrop.copy()
            dx, dy = (int(v) for v in rng.integers(-JITTER, JITTER + 1, size=2))
            top = (height - photo.shape[0]) // 2 + dy
            left = (width - photo.shape[1]) // 2 + dx
            frame[top : top + photo.shape[0], left : left + photo.shape[1]] = photo
            frame = np.clip(frame.astype(np.int16) + noise[i % 4], 0, 255).astype(np.uint8)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def evaluate(report: Any, scenes: list[Scene], predictor: Predictor, tolerance: float) -> dict[str, Any]:
    segs = report.segments
    found = []
    used: set[int] = set()
    for sc in scenes:
        hit = next(
            (
                s
                for s in segs
                if s.index not in used
                and abs(s.start_s - sc.start_s) <= tolerance
                and abs(s.end_s - sc.end_s) <= tolerance
            ),
            None,
        )
        if hit is not None:
            used.add(hit.index)
        found.append(hit)
    photo_verdicts: dict[bytes, str] = {}
    same_as_photo = same_as_label = 0
    counterfeit_scenes = counterfeit_found = 0
    errors_s = []
    for sc, seg in zip(scenes, found, strict=True):
        if sc.jpeg not in photo_verdicts:
            photo_verdicts[sc.jpeg] = predictor.score_item([(None, sc.jpeg)]).item.verdict
        photo_verdict = photo_verdicts[sc.jpeg]
        if photo_verdict == "counterfeit":
            counterfeit_scenes += 1
        if seg is None:
            continue
        errors_s += [abs(seg.start_s - sc.start_s), abs(seg.end_s - sc.end_s)]
        same_as_photo += seg.verdict == photo_verdict
        same_as_label += seg.verdict == sc.label
        counterfeit_found += photo_verdict == "counterfeit" and seg.verdict == "counterfeit"
    n_found = sum(f is not None for f in found)
    verdicts = [s.verdict for s in segs]
    return {
        "scenes": len(scenes),
        "segments": len(segs),
        "tolerance_s": tolerance,
        "scenes_found": n_found,
        "scenes_found_rate": n_found / len(scenes),
        "extra_segments": len(segs) - n_found,
        "boundary_error_s_median": round(float(np.median(errors_s)), 3) if errors_s else None,
        "boundary_error_s_max": round(float(np.max(errors_s)), 3) if errors_s else None,
        "segment_verdict_same_as_photo": same_as_photo,
        "segment_verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        "photo_verdicts_of_scenes": {
            v: sum(photo_verdicts[sc.jpeg] == v for sc in scenes)
            for v in sorted(set(photo_verdicts.values()))
        },
        "counterfeit_scenes_by_photo": counterfeit_scenes,
        "counterfeit_scenes_found_as_counterfeit": counterfeit_found,
        "segment_verdict_same_as_label": same_as_label,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--sample-fps", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=16, help="Frames per model call (the CLI's default).")
    ap.add_argument("--source", choices=("sneakers", "synthetic"), default="sneakers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="Keep the recording at this path.")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    predictor = Predictor.load(args.bundle, max_pixels=50_000_000)
    scenes = make_scenes(args.source, args.seconds, args.height, args.fps, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "stream.mp4"
        t = time.perf_counter()
        write_recording(path, scenes, height=args.height, fps=args.fps, seed=args.seed)
        encode_s = time.perf_counter() - t
        options = VideoOptions(sample_fps=args.sample_fps, batch=args.batch)
        predictor.infer(np.zeros((args.batch, *predictor.input_size, 3), dtype=np.uint8))  # warm up
        report = analyse_video(path, predictor, score=predictor.infer, options=options)
        size = path.stat().st_size
    result = {
        "bundle": predictor.model_ref.model_dump(),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "recording": {
            "source": args.source,
            "width": report.video.width,
            "height": report.video.height,
            "fps": report.video.fps,
            "duration_s": report.video.duration_s,
            "bytes": size,
            "encode_s": round(encode_s, 1),
        },
        "sampling": report.sampling.model_dump(),
        "processing": report.processing.model_dump(),
        "inference_share": round(report.processing.inference_seconds / report.processing.seconds, 3),
        "complete": report.complete,
        "detection": evaluate(report, scenes, predictor, 2.0 / args.sample_fps),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
