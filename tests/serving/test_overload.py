"""Overload (429 with Retry-After, no crash) and graceful shutdown (in-flight requests finish)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serverutil import Server, copy_bundle, start_server, stop_server


def _png(width: int, height: int, seed: int) -> bytes:
    """A noisy PNG: PNGs decode in full (no draft), so these keep the decoder busy."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
        buf, "PNG", compress_level=1
    )
    return buf.getvalue()


@pytest.fixture(scope="module")
def small_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No keys (loopback), a queue of only 4 images, batches of 2, no wait at the door."""
    tmp = tmp_path_factory.mktemp("overload")
    s = start_server(
        copy_bundle(tiny_bundle_dir, tmp / "bundle"),
        tmp / "serve.log",
        env={
            "AUTHLENS_QUEUE_SIZE": "4",
            "AUTHLENS_MAX_BATCH_IMAGES": "4",
            "AUTHLENS_BATCH_MAX_SIZE": "2",
            "AUTHLENS_DECODE_WORKERS": "1",
            "AUTHLENS_ADMISSION_WAIT_S": "0",  # refuse at once: what these tests look at
        },
    )
    yield s
    stop_server(s)


def test_overload_answers_429_with_retry_after(small_server: Server) -> None:
    photos = [("files", (f"{i}.png", _png(1500, 1000, i))) for i in range(4)]

    def call(_: int) -> httpx.Response:
        with httpx.Client(base_url=small_server.url, timeout=120) as c:
            return c.post("/v1/score", files=photos)

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(call, range(12)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429}, codes
    assert codes.count(429) >= 1 and codes.count(200) >= 1, codes
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "overloaded"
            assert int(r.headers["retry-after"]) >= 1
    with httpx.Client(base_url=small_server.url) as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/score", files=photos[:1]).status_code == 200  # queue drained, still serving
        metrics = c.get("/metrics").text
    assert 'authlens_rejected_total{reason="overloaded"}' in metrics
    assert "authlens_queue_depth 0.0" in metrics


def test_a_full_pipeline_refuses_before_reading_the_body(small_server: Server) -> None:
    """While 4 images (the whole queue) decode, a new request gets 429 although it has sent
    nothing but its headers: refusing costs no upload."""
    photos = [("files", (f"{i}.png", _png(2000, 1500, 30 + i))) for i in range(4)]
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        with httpx.Client(base_url=small_server.url, timeout=120) as c:
            result["r"] = c.post("/v1/score", files=photos)

    thread = threading.Thread(target=call)
    thread.start()
    with httpx.Client(base_url=small_server.url) as c:
        deadline = time.monotonic() + 30
        while "authlens_queue_depth 4.0" not in c.get("/metrics").text:
            assert time.monotonic() < deadline, "the 4-photo request never filled the queue"
            time.sleep(0.005)
    port = int(small_server.url.rsplit(":", 1)[1])
    head = b"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + b"Content-Length: 50000000\r\n\r\n")  # and never the body
        answer = b""
        while chunk := s.recv(4096):  # the server closes after refusing
            answer += chunk
    thread.join(60)
    assert answer.startswith(b"HTTP/1.1 429"), answer
    assert b'"overloaded"' in answer and b"retry-after:" in answer.lower()
    assert result["r"].status_code == 200


def test_graceful_shutdown_finishes_in_flight_requests(small_server: Server) -> None:
    photos = [("files", (f"{i}.png", _png(2000, 1500, 10 + i))) for i in range(4)]
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        with httpx.Client(base_url=small_server.url, timeout=120) as c:
            result["r"] = c.post("/v1/score", files=photos)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=small_server.url) as c:
        while time.monotonic() < deadline:  # wait until the request is admitted and working
            if "authlens_queue_depth 0.0" not in c.get("/metrics").text:
                break
            time.sleep(0.005)
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15
    assert stop_server(small_server) in (0, -15)
    thread.join(60)
    assert result["r"].status_code == 200, result["r"].text
    assert len(result["r"].json()["images"]) == 4
    logs = small_server.logs()
    finished = logs.index(f"request_id={result['r'].json()['request_id']}")
    assert logs.index("Shutting down") < finished < logs.index("Application shutdown complete")
