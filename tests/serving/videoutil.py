"""Short recordings built at test time (PyAV) from synthetic product frames, with known segments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

CODECS = {".mp4": "libx264", ".mkv": "libx264", ".flv": "flv", ".ts": "mpeg2video", ".webm": "libvpx"}


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int = 10, *, faststart: bool = True) -> Path:
    """Encode ``(H, W, 3)`` uint8 frames; the container and codec follow the suffix."""
    import av

    codec = CODECS[path.suffix]
    options = {"movflags": "faststart"} if path.suffix == ".mp4" and faststart else {}
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18", "g": str(fps)}
        elif codec in ("mpeg2video", "flv"):
            stream.bit_rate = 4_000_000
            stream.gop_size = fps
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@dataclass(frozen=True)
class Scene:
    """A stretch of the recording showing one picture (slightly moving, so frames differ a little)."""

    pixels: np.ndarray
    seconds: float
    label: str


def scenes_to_frames(
    scenes: Sequence[Scene], fps: int, *, jitter: int = 2, seed: int = 0
) -> list[np.ndarray]:
    """Frames of each scene in turn; each frame is shifted by up to ``jitter`` pixels (a hand-held camera)."""
    rng = np.random.default_rng(seed)
    frames = []
    for scene in scenes:
        for _ in range(round(scene.seconds * fps)):
            dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
            frames.append(np.roll(scene.pixels, (dy, dx), axis=(0, 1)))
    return frames


def boundaries(scenes: Sequence[Scene]) -> list[tuple[float, float, str]]:
    """``(start_s, end_s, label)`` of each scene."""
    out, t = [], 0.0
    for s in scenes:
        out.append((t, t + s.seconds, s.label))
        t += s.seconds
    return out


def product_frame(seed: int, photo: int, item: int, size: int = 192) -> np.ndarray:
    """A synthetic product photo (training's generator; tests may import it, serving may not)."""
    from training.data.synth import synth_photo

    return synth_photo(seed, photo, item, size).pixels
