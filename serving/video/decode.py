"""Recorded streams to sampled RGB frames (PyAV, which ships FFmpeg in its wheel), within limits.

:func:`probe` opens a recording and checks its container, duration, resolution and size before
any frame is decoded; :func:`sample_frames` yields frames at ``fps`` (by presentation time) as
``(H, W, 3)`` uint8 RGB reduced to :data:`ANALYSIS_SIDE`, and stops where the file stops making
sense: a corrupt or truncated recording yields the frames it has and says where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.errors import CodedError

log = logging.getLogger(__name__)

ANALYSIS_SIDE = 640
"""Frames are scaled (by FFmpeg) to this longer side before anything else sees them."""

CONTAINERS: dict[str, str] = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4",
    "matroska,webm": "MKV",
    "flv": "FLV",
    "mpegts": "TS",
}
"""FFmpeg demuxers accepted, by the name PyAV reports, and what the report calls them."""


class VideoError(CodedError):
    """A recording that cannot be scored; ``code`` is stable."""

    code = "invalid_video"


class UnsupportedVideo(VideoError):
    code = "unsupported_video"


class CorruptVideo(VideoError):
    code = "corrupt_video"


class VideoTooLarge(VideoError):
    code = "video_too_large"


@dataclass(frozen=True)
class VideoLimits:
    """Bounds on one recording (``serving.core.config.Settings`` ``video_*``)."""

    max_bytes: int = 2**30
    max_duration_s: float = 4 * 3600.0
    max_pixels: int = 3840 * 2160


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a recording."""

    container: str
    codec: str
    width: int
    height: int
    duration_s: float
    fps: float
    bytes: int


@dataclass(frozen=True)
class Frame:
    """A sampled frame: presentation time and reduced RGB pixels."""

    time_s: float
    pixels: np.ndarray  # (h, w, 3) uint8, longer side <= ANALYSIS_SIDE
    original_size: tuple[int, int]  # (width, height) of the recording


@dataclass
class Stop:
    """Where decoding ended early, if it did (set by :func:`sample_frames`)."""

    at_s: float | None = None
    reason: str | None = None
    last_s: float = 0.0  # presentation time of the last frame decoded


def _av():
    import av

    return av


def probe(path: Path, limits: VideoLimits) -> VideoInfo:
    """Open ``path`` and check it against ``limits`` before decoding.

    Raises:
        VideoTooLarge: bytes, duration or resolution beyond the limits.
        UnsupportedVideo: another container than MP4/MKV/FLV/TS, or no video stream.
        CorruptVideo: FFmpeg cannot open it (a truncated MP4 without its index, random bytes).
    """
    av = _av()
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise VideoTooLarge(
            f"The recording is {size} bytes; the limit is {limits.max_bytes} (video_max_bytes)."
        )
    if size == 0:
        raise CorruptVideo("The recording is empty.")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            name = container.format.name
            if name not in CONTAINERS:
                raise UnsupportedVideo(
                    f"Container {name!r} is not accepted; send MP4, MKV (WebM), FLV or MPEG-TS."
                )
            if not container.streams.video:
                raise UnsupportedVideo("The file has no video stream.")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            if container.duration is not None:
                duration = container.duration / 1_000_000
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
            rate = stream.average_rate or stream.guessed_rate
            info = VideoInfo(
                container=CONTAINERS[name],
                codec=stream.codec_context.name,
                width=width,
                height=height,
                duration_s=round(float(duration), 3),
                fps=round(float(rate), 3) if rate else 0.0,
                bytes=size,
            )
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise CorruptVideo(f"The recording cannot be opened ({_why(exc)}).") from None
    if width <= 0 or height <= 0:
        raise CorruptVideo("The video stream declares no frame size.")
    if width * height > limits.max_pixels:
        raise VideoTooLarge(
            f"The video is {width}x{height}; the limit is {limits.max_pixels} pixels a frame (video_max_pixels)."
        )
    if info.duration_s > limits.max_duration_s:
        raise VideoTooLarge(
            f"The recording lasts {info.duration_s:.0f} s; the limit is {limits.max_duration_s:.0f} s "
            "(video_max_duration_s)."
        )
    return info


def _why(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace(" ", " ")[:200]


def sample_frames(
    path: Path, info: VideoInfo, *, fps: float, limits: VideoLimits, stop: Stop
) -> Iterator[Frame]:
    """Frames at ``fps`` by presentation time, reduced to :data:`ANALYSIS_SIDE`.

    Decoding errors end the iteration (the frames before them were yielded) and are recorded in
    ``stop`` with the time reached; so is the duration limit, for a file whose header lied.
    """
    av = _av()
    ratio = min(1.0, ANALYSIS_SIDE / max(info.width, info.height))
    out_w = max(2, round(info.width * ratio))
    out_h = max(2, round(info.height * ratio))
    step = 1.0 / fps
    next_t = 0.0
    last_t = 0.0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # MPEG-TS and FLV streams rarely start at 0: times are reported from the first frame
            origin: float | None = None
            if stream.start_time is not None and stream.time_base is not None:
                origin = float(stream.start_time * stream.time_base)
            for frame in container.decode(stream):
                t = frame.time
                if t is None:
                    continue
                if origin is None:
                    origin = float(t)
                t = max(0.0, float(t) - origin)
                last_t = max(last_t, t)
                stop.last_s = last_t
                if t > limits.max_duration_s:
                    stop.at_s, stop.reason = last_t, "duration limit (video_max_duration_s) reached"
                    return
                if t + 1e-6 < next_t:
                    continue
                if frame.width * frame.height > limits.max_pixels:
                    stop.at_s, stop.reason = t, "a frame beyond video_max_pixels"
                    return
                pixels = frame.reformat(width=out_w, height=out_h, format="rgb24").to_ndarray()
                yield Frame(t, np.ascontiguousarray(pixels), (info.width, info.height))
                next_t = (np.floor(t / step) + 1) * step
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        stop.at_s, stop.reason = last_t, f"decoding failed: {_why(exc)}"
        log.warning("video_decode_stopped", extra={"fields": {"at_s": last_t, "error": _why(exc)}})
