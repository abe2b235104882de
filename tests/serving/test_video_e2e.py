"""Recorded streams end to end on a real ``authlens serve``: upload, background job, polling, report.

The tiny test model has random weights, so the test makes a bundle whose decision thresholds
make the product on screen decisive: synthetic products are scored by the real predictor, the
two with the highest authenticity become the "genuine" scenes and the two with the lowest the
"counterfeit" ones, and the thresholds are re-sealed between them. The server then finds each
counterfeit segment from the video alone, within TOLERANCE_S of its true start and end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serverutil import API_KEY, ROOT, Server, copy_bundle, sha, start_server, stop_server
from videoutil import Scene, boundaries, product_frame, scenes_to_frames, write_video

from model.bundle import rewrite_manifest

FPS = 10
SAMPLE_FPS = 4
TOLERANCE_S = 0.5  # two sampling intervals: a cut is seen at the first sampled frame after it


def _p_counterfeit(predictor, pixels: np.ndarray) -> float:
    from serving.video.analysis import prepare_frame
    from serving.video.decode import Frame

    frame = Frame(0.0, pixels, (pixels.shape[1], pixels.shape[0]))
    return 1.0 - predictor.infer(prepare_frame(predictor, frame).pixels[None])[0].p_genuine


@pytest.fixture(scope="module")
def decisive(
    tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """A bundle whose thresholds separate two products from two others, and those products."""
    from serving.predictor import Predictor

    predictor = Predictor.load(tiny_bundle_dir, max_pixels=10**8)
    frames = [product_frame(0, i, i) for i in range(16)]
    scores = sorted((_p_counterfeit(predictor, f), i) for i, f in enumerate(frames))
    genuine, counterfeit = scores[:2], scores[-2:]
    gap = counterfeit[0][0] - genuine[-1][0]
    assert gap > 0.05, scores
    bundle = copy_bundle(tiny_bundle_dir, tmp_path_factory.mktemp("decisive") / "bundle")
    rewrite_manifest(
        bundle,
        {
            "decision": {
                "genuine_threshold": genuine[-1][0] + gap / 3,
                "counterfeit_threshold": counterfeit[0][0] - gap / 3,
            }
        },
    )
    return bundle, {
        "genuine": [frames[i] for _, i in genuine],
        "counterfeit": [frames[i] for _, i in counterfeit],
    }


@pytest.fixture(scope="module")
def video_server(decisive, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    bundle, _ = decisive
    tmp = tmp_path_factory.mktemp("video-server")
    (tmp / "recordings").mkdir()
    s = start_server(
        bundle,
        tmp / "serve.log",
        env={
            "AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]',
            "AUTHLENS_VIDEO_SAMPLE_FPS": str(SAMPLE_FPS),
            "AUTHLENS_VIDEO_RECORDINGS_DIR": str(tmp / "recordings"),
            "AUTHLENS_VIDEO_MAX_DURATION_S": "40",
            "AUTHLENS_VIDEO_MAX_QUEUED": "1",
            "AUTHLENS_VIDEO_DIR": str(tmp / "jobs"),
        },
    )
    yield s
    stop_server(s)


def _stream(products: dict[str, list[np.ndarray]]) -> list[Scene]:
    g, c = products["genuine"], products["counterfeit"]
    return [
        Scene(g[0], 2.0, "genuine"),
        Scene(c[0], 1.5, "counterfeit"),
        Scene(g[1], 2.0, "genuine"),
        Scene(c[1], 1.5, "counterfeit"),
        Scene(g[0], 1.0, "genuine"),
    ]


def _wait(client: httpx.Client, url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in ("done", "failed"):
            return body
        assert 0.0 <= body["progress"] <= 1.0
        time.sleep(0.1)
    raise AssertionError(f"job {url} did not finish in {timeout} s")


def test_upload_finds_each_counterfeit_segment(video_server: Server, decisive, tmp_path: Path) -> None:
    _, products = decisive
    scenes = _stream(products)
    path = write_video(tmp_path / "live.mp4", scenes_to_frames(scenes, FPS), FPS)
    with video_server.client() as c:
        r = c.post("/v1/score/video", files={"file": ("live.mp4", path.read_bytes(), "video/mp4")})
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert r.headers["location"] == accepted["status_url"] == f"/v1/jobs/{accepted['job_id']}"
        job = _wait(c, accepted["status_url"])
    assert job["status"] == "done", job
    report = job["report"]
    assert report["complete"] and report["video"]["container"] == "MP4"
    assert report["model"]["name"] == "tiny"
    truth = boundaries(scenes)
    segs = report["segments"]
    assert len(segs) == len(truth), [(s["start_s"], s["end_s"], s["verdict"]) for s in segs]
    for seg, (start, end, label) in zip(segs, truth, strict=True):
        assert seg["verdict"] == label, (seg["start_s"], seg["counterfeit_probability"], label)
        assert abs(seg["start_s"] - start) <= TOLERANCE_S and abs(seg["end_s"] - end) <= TOLERANCE_S
        assert seg["thumbnail_jpeg_base64"] and start - 1e-6 <= seg["suspect_frame_s"] <= end
    assert report["suspect_segments"] == [1, 3]
    assert report["processing"]["realtime_factor"] > 1.0
    assert report["timeline_png_base64"].startswith("iVBOR")  # PNG
    (tmp_path / "report.json").write_text(json.dumps(report))

    # the CLI scores the same file with the same predictor: the same segments and scores
    out = tmp_path / "reports" / "cli.json"  # a folder that does not exist yet
    proc = subprocess.run(
        [sys.executable, "-m", "authlens", "score-video", str(path), "--bundle", str(video_server.bundle),
         "--out", str(out), "--sample-fps", str(SAMPLE_FPS)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    cli = json.loads(out.read_text())["videos"][0]
    assert [
        (s["start_s"], s["end_s"], s["verdict"], s["counterfeit_probability"]) for s in cli["segments"]
    ] == [(s["start_s"], s["end_s"], s["verdict"], s["counterfeit_probability"]) for s in segs]
    assert (out.parent / cli["timeline_png"]).stat().st_size > 500


def test_bad_recordings_get_clear_errors_at_once(video_server: Server, decisive, tmp_path: Path) -> None:
    _, products = decisive
    long = write_video(
        tmp_path / "long.ts", scenes_to_frames([Scene(products["genuine"][0], 45.0, "g")], FPS), FPS
    )
    with video_server.client() as c:
        junk = c.post("/v1/score/video", files={"file": ("x.mp4", b"\x00" * 5000 + b"junk", "video/mp4")})
        assert junk.status_code == 422 and junk.json()["error"]["code"] == "corrupt_video"
        too_long = c.post("/v1/score/video", files={"file": ("long.ts", long.read_bytes(), "video/mp2t")})
        assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "video_too_large"
        assert "video_max_duration_s" in too_long.json()["error"]["message"]
        neither = c.post("/v1/score/video", files={"other": ("a", b"a")})
        assert neither.status_code == 422 and neither.json()["error"]["code"] == "invalid_request"
        escape = c.post("/v1/score/video", files={"path": (None, "../serve.log")})
        assert escape.status_code == 422 and escape.json()["error"]["code"] == "invalid_request"
        as_json = c.post("/v1/score/video", json={"path": "a.mp4"})
        assert as_json.status_code == 415 and "recording as `file`" in as_json.json()["error"]["message"]
        missing = c.get("/v1/jobs/0123456789abcdef")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        assert (
            c.post("/v1/score/video", headers={"X-API-Key": "wrong"}, files={"path": (None, "a")}).status_code
            == 401
        )


def test_recording_by_path_and_photos_are_not_starved(video_server: Server, decisive, tmp_path: Path) -> None:
    """A long recording named by path scores in the background while photo requests keep their
    latency; with one job running and one waiting (video_max_queued 1) a third is refused with 429."""
    from factories import jpeg_bytes

    _, products = decisive
    recordings = Path(video_server.log).parent / "recordings"
    scenes = [Scene(products["genuine" if i % 2 else "counterfeit"][i % 2], 1.0, str(i)) for i in range(36)]
    write_video(recordings / "long.mkv", scenes_to_frames(scenes, FPS, seed=3), FPS)
    photo = jpeg_bytes(320, 240)
    with video_server.client() as c:

        def photo_latencies(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                r = c.post("/v1/score", files=[("files", ("p.jpg", photo, "image/jpeg"))])
                assert r.status_code == 200, r.text
                out.append(time.perf_counter() - t)
            return out

        baseline = photo_latencies(10)
        first = c.post("/v1/score/video", files={"path": (None, "long.mkv")})
        second = c.post("/v1/score/video", files={"path": (None, "long.mkv")})
        assert first.status_code == 202 and second.status_code == 202, (first.text, second.text)
        third = c.post("/v1/score/video", files={"path": (None, "long.mkv")})
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
        status = c.get(second.json()["status_url"]).json()
        assert status["status"] == "queued" and status["queue_position"] == 0
        during = photo_latencies(20)
        running = c.get(first.json()["status_url"]).json()
        job = _wait(c, first.json()["status_url"])
        assert job["status"] == "done" and job["report"]["video"]["container"] == "MKV"
        assert len(job["report"]["segments"]) == 36
        _wait(c, second.json()["status_url"])
    assert running["status"] in ("running", "done")
    # photos wait at most for one batch of frames already in the model
    assert np.percentile(during, 90) < np.percentile(baseline, 90) + 0.5, (baseline, during)
    assert max(during) < 2.0


def test_concurrent_polling_while_a_job_runs(video_server: Server, decisive, tmp_path: Path) -> None:
    _, products = decisive
    path = write_video(tmp_path / "s.flv", scenes_to_frames(_stream(products), FPS), FPS)
    seen: list[float] = []
    with video_server.client() as c:
        r = c.post("/v1/score/video", files={"file": ("s.flv", path.read_bytes(), "video/x-flv")})
        assert r.status_code == 202
        url = r.json()["status_url"]

        def poll() -> None:
            with video_server.client() as c2:
                for _ in range(20):
                    seen.append(c2.get(url).json()["progress"])

        threads = [threading.Thread(target=poll) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        job = _wait(c, url)
    assert job["status"] == "done" and job["report"]["suspect_segments"] == [1, 3]
    assert all(0.0 <= p <= 1.0 for p in seen)
