"""Recorded streams without a server: decoding within limits, shots, duplicates, segment verdicts.

Shots and verdict combination are tested with controlled model outputs (a scorer that answers
from the frame's known content); the real predictor is used end to end in test_video_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from videoutil import Scene, boundaries, scenes_to_frames, write_video

from serving.predictor import Predictor, RawOutput
from serving.video.analysis import VideoOptions, analyse_video, colour_histogram, is_cut
from serving.video.decode import CorruptVideo, UnsupportedVideo, VideoLimits, VideoTooLarge, probe

FPS = 10
TOLERANCE_S = 0.5  # two sampling intervals at 4 frames/s


def _solid(rgb: tuple[int, int, int], size: int = 96, seed: int = 0) -> np.ndarray:
    """A textured picture of one dominant colour (the texture keeps it sharp for the model)."""
    rng = np.random.default_rng(seed)
    base = np.array(rgb, dtype=np.float32)[None, None]
    noise = rng.normal(0, 18, size=(size, size, 3))
    y, x = np.mgrid[0:size, 0:size]
    stripes = 20 * np.sin((x + 2 * y) / 3.0)[..., None]
    return np.clip(base + noise + stripes, 0, 255).astype(np.uint8)


RED, BLUE, GREEN = (200, 40, 40), (40, 60, 200), (40, 170, 60)


@pytest.fixture(scope="module")
def predictor(tiny_bundle_dir: Path) -> Predictor:
    return Predictor.load(tiny_bundle_dir, max_pixels=10**8)


def scorer_by_colour(predictor: Predictor):
    """Model outputs chosen by content: a red-dominated frame is counterfeit (p_genuine 0.05),
    any other genuine (0.95); a green-dominated frame is out of distribution."""

    def score(pixels: np.ndarray) -> list[RawOutput]:
        real = predictor.infer(pixels)  # the real maps and embeddings, controlled verdict inputs
        out = []
        for px, r in zip(pixels, real, strict=True):
            mean = px.reshape(-1, 3).mean(axis=0)
            red = mean[0] > mean[1] + 40 and mean[0] > mean[2] + 40
            green = mean[1] > mean[0] + 40 and mean[1] > mean[2] + 40
            ood = 2e9 if green else 0.0
            out.append(RawOutput(0.05 if red else 0.95, r.flag_probs, r.cam, r.flag_maps, ood, r.embedding))
        return out

    return score


def test_histogram_cuts_between_products_not_within_a_shot() -> None:
    a, a2, b = _solid(RED, seed=1), _solid(RED, seed=2), _solid(BLUE, seed=3)
    assert not is_cut(colour_histogram(a), colour_histogram(a2), 0.5)
    assert not is_cut(colour_histogram(a), colour_histogram(np.roll(a, 3, axis=1)), 0.5)
    assert is_cut(colour_histogram(a), colour_histogram(b), 0.5)


def test_segments_follow_the_scenes_with_their_verdicts(predictor: Predictor, tmp_path: Path) -> None:
    scenes = [
        Scene(_solid(BLUE, seed=1), 2.0, "genuine"),
        Scene(_solid(RED, seed=2), 1.5, "counterfeit"),
        Scene(_solid(BLUE, seed=3), 2.5, "genuine"),
        Scene(_solid(RED, seed=4), 2.0, "counterfeit"),
    ]
    path = write_video(tmp_path / "stream.mp4", scenes_to_frames(scenes, FPS), FPS)
    report = analyse_video(
        path, predictor, score=scorer_by_colour(predictor), options=VideoOptions(sample_fps=4)
    )
    assert (
        report.complete and report.video.container == "MP4" and report.video.duration_s == pytest.approx(8.0)
    )
    truth = boundaries(scenes)
    assert len(report.segments) == len(truth)
    for seg, (start, end, label) in zip(report.segments, truth, strict=True):
        assert abs(seg.start_s - start) <= TOLERANCE_S and abs(seg.end_s - end) <= TOLERANCE_S, (
            seg,
            start,
            end,
        )
        assert seg.verdict == label
        assert start - 1e-6 <= seg.suspect_frame_s <= end
    assert report.suspect_segments == [1, 3]
    assert len(report.timeline) == report.sampling.frames_scored
    assert report.timeline_png_base64 and report.processing.realtime_factor > 0


def test_out_of_distribution_frames_do_not_vote(predictor: Predictor, tmp_path: Path) -> None:
    """A shot whose frames are all out of distribution is inconclusive; its thumbnail comes from
    the frames it has, and the OOD frames are marked on the timeline as not voting."""
    scenes = [Scene(_solid(BLUE), 2.0, "genuine"), Scene(_solid(GREEN), 2.0, "ood")]
    path = write_video(tmp_path / "ood.mkv", scenes_to_frames(scenes, FPS), FPS)
    report = analyse_video(
        path, predictor, score=scorer_by_colour(predictor), options=VideoOptions(sample_fps=4)
    )
    assert [s.verdict for s in report.segments] == ["genuine", "inconclusive"]
    ood = report.segments[1]
    assert ood.inconclusive_reasons[:2] == ["no_usable_image", "out_of_distribution"]
    assert ood.frames_usable == 0 and ood.frames_scored > 0
    assert not any(p.usable for p in report.timeline if p.time_s >= 2.0 + TOLERANCE_S)


def test_still_frames_are_scored_once(predictor: Predictor, tmp_path: Path) -> None:
    """A still picture (no camera shake) is scored once per shot; the rest are skipped duplicates."""
    scenes = [Scene(_solid(BLUE), 3.0, "a"), Scene(_solid(RED), 3.0, "b")]
    path = write_video(tmp_path / "still.flv", scenes_to_frames(scenes, FPS, jitter=0), FPS)
    report = analyse_video(
        path, predictor, score=scorer_by_colour(predictor), options=VideoOptions(sample_fps=4)
    )
    assert [s.frames_scored for s in report.segments] == [1, 1]
    assert report.sampling.frames_duplicate >= 20
    assert report.video.container == "FLV"


@pytest.mark.parametrize("suffix", [".ts", ".webm"])
def test_other_containers(predictor: Predictor, tmp_path: Path, suffix: str) -> None:
    scenes = [Scene(_solid(BLUE), 1.5, "genuine"), Scene(_solid(RED), 1.5, "counterfeit")]
    path = write_video(tmp_path / f"s{suffix}", scenes_to_frames(scenes, FPS), FPS)
    report = analyse_video(
        path, predictor, score=scorer_by_colour(predictor), options=VideoOptions(sample_fps=4)
    )
    assert [s.verdict for s in report.segments] == ["genuine", "counterfeit"]
    assert abs(report.segments[1].start_s - 1.5) <= TOLERANCE_S


def test_truncated_recording_scores_what_it_has_and_says_where_it_stopped(
    predictor: Predictor, tmp_path: Path
) -> None:
    scenes = [Scene(_solid(BLUE, seed=i), 1.0, str(i)) for i in range(6)]
    full = write_video(tmp_path / "full.mp4", scenes_to_frames(scenes, FPS), FPS)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    report = analyse_video(
        cut, predictor, score=scorer_by_colour(predictor), options=VideoOptions(sample_fps=4)
    )
    assert not report.complete
    assert report.stopped_at_s is not None and 1.0 < report.stopped_at_s < 5.0
    assert "truncated" in (report.stop_reason or "")
    assert report.segments and report.segments[-1].end_s <= report.stopped_at_s + TOLERANCE_S


def test_limits_and_bad_files_are_refused_before_decoding(tmp_path: Path) -> None:
    frames = scenes_to_frames([Scene(_solid(BLUE, size=160), 3.0, "a")], FPS)
    path = write_video(tmp_path / "v.mp4", frames, FPS)
    with pytest.raises(VideoTooLarge, match="lasts 3 s"):
        probe(path, VideoLimits(max_duration_s=2.0))
    with pytest.raises(VideoTooLarge, match="160x160"):
        probe(path, VideoLimits(max_pixels=100 * 100))
    with pytest.raises(VideoTooLarge, match="video_max_bytes"):
        probe(path, VideoLimits(max_bytes=1024))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptVideo):
        probe(junk, VideoLimits())
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(CorruptVideo):
        probe(empty, VideoLimits())
    from PIL import Image

    gif = tmp_path / "anim.gif"
    Image.fromarray(_solid(BLUE)).save(gif)
    with pytest.raises((UnsupportedVideo, CorruptVideo)):
        probe(gif, VideoLimits())


def test_job_queue_bounds_runs_and_expires(tmp_path: Path) -> None:
    """Jobs run one at a time, one more waits, the next is refused; finished jobs expire with their files."""
    import asyncio
    import time

    from serving.video.jobs import JobFailed, QueueFull, VideoJobs

    async def scenario() -> None:
        jobs = VideoJobs(tmp_path, workers=1, max_queued=1, ttl_s=0.2, timeout_s=5)
        release = asyncio.Event()

        async def run(job):  # a stand-in runner: waits for the test, or fails with a stable code
            if job.name == "bad":
                raise JobFailed("corrupt_video", "broken")
            await release.wait()
            from serving.schemas import VideoReport

            return VideoReport.model_construct(name=job.name)

        jobs.start(run)
        first, second = jobs.new_job("a"), jobs.new_job("b")
        first.path.write_bytes(b"x")
        second.path.write_bytes(b"x")
        jobs.submit(first)
        await asyncio.sleep(0.05)
        jobs.submit(second)
        assert jobs.status(first).status == "running" and jobs.status(second).queue_position == 0
        with pytest.raises(QueueFull):
            jobs.check_room()
        release.set()
        for _ in range(100):
            if second.status == "done":
                break
            await asyncio.sleep(0.02)
        assert (
            first.status == "done" and first.report_path is not None and not first.path.exists()
        )  # upload deleted
        bad = jobs.new_job("bad")
        jobs.submit(bad)
        for _ in range(100):
            if bad.status == "failed":
                break
            await asyncio.sleep(0.02)
        assert jobs.status(bad).error is not None and jobs.status(bad).error.code == "corrupt_video"
        time.sleep(0.3)
        assert jobs.get(first.id) is None and not first.folder.exists()
        await jobs.close()

    asyncio.run(scenario())
