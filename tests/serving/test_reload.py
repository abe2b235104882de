"""Hot reload on a real server: a corrupted bundle is refused while the old one keeps answering,
a good one is swapped in, and no request fails during either."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import jpeg_bytes, tiny_bundle
from serverutil import ADMIN_KEY, API_KEY, Server, copy_bundle, sha, start_server, stop_server

from model.bundle import load_bundle, rewrite_manifest


@pytest.fixture(scope="module")
def reload_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("reload")
    s = start_server(
        copy_bundle(tiny_bundle_dir, tmp / "bundle"),
        tmp / "serve.log",
        env={"AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]', "AUTHLENS_ADMIN_KEY_HASH": sha(ADMIN_KEY)},
    )
    yield s
    stop_server(s)


class Traffic:
    """Scores photos in a loop on two threads, recording every status and bundle hash."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stop = threading.Event()
        self.results: list[tuple[int, str]] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(2)]

    def _run(self, seed: int) -> None:
        photo = jpeg_bytes(320, 240, seed=seed)
        with self.server.client() as c:
            while not self.stop.is_set():
                r = c.post("/v1/score", files=[("files", ("t.jpg", photo))])
                sha256 = r.json()["model"]["bundle_sha256"] if r.status_code == 200 else r.text
                self.results.append((r.status_code, sha256))

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _wait_for(traffic: Traffic, n: int) -> None:
    start = len(traffic.results)
    for _ in range(600):
        if len(traffic.results) >= start + n:
            return
        threading.Event().wait(0.05)
    raise AssertionError("traffic made no progress")


def test_reload_refuses_corrupt_bundle_then_swaps_good_one(reload_server: Server, tmp_path: Path) -> None:
    s = reload_server
    old = load_bundle(s.bundle).sha256
    admin = {"X-API-Key": ADMIN_KEY}
    with Traffic(s) as traffic, s.client() as c:
        _wait_for(traffic, 3)
        # 1. corrupt the model file in place: verification fails, the old model keeps serving
        model = s.bundle / "model.onnx"
        pristine = model.read_bytes()
        model.write_bytes(pristine[:-10] + b"corrupted!")
        r = c.post("/v1/admin/reload", headers=admin)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "bundle_invalid"
        assert "model.onnx" in r.json()["error"]["message"]
        _wait_for(traffic, 3)
        assert c.get("/readyz").json()["bundle_sha256"] == old

        # 2. a valid new bundle (another input size) replaces the directory's contents
        fresh = tiny_bundle(tmp_path / "v2", image_size=96)
        for f in s.bundle.iterdir():
            f.unlink()
        for f in Path(fresh.path).iterdir():
            shutil.copy2(f, s.bundle / f.name)
        r = c.post("/v1/admin/reload", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json() == {"previous_bundle_sha256": old, "bundle_sha256": fresh.sha256, "changed": True}
        _wait_for(traffic, 3)
        info = c.get("/v1/model").json()
    assert info["model"]["bundle_sha256"] == fresh.sha256 and info["input"]["height"] == 96
    statuses = {code for code, _ in traffic.results}
    assert statuses == {200}, [r for r in traffic.results if r[0] != 200][:3]
    seen = [h for _, h in traffic.results]
    assert set(seen) == {old, fresh.sha256}
    # once the new model answers, the old one never does again
    first_new = seen.index(fresh.sha256)
    assert old not in seen[first_new + 2 :]  # two threads: at most one request each in flight at swap
    metrics = s.client().get("/metrics").text
    assert 'authlens_reloads_total{outcome="refused"} 1.0' in metrics
    assert 'authlens_reloads_total{outcome="ok"} 1.0' in metrics


def test_reload_needs_the_admin_key(reload_server: Server) -> None:
    with reload_server.client() as c:
        assert c.post("/v1/admin/reload").status_code == 401
        assert (
            c.post("/v1/admin/reload", headers={"X-API-Key": "nope"}).json()["error"]["code"]
            == "unauthorized"
        )


def _replace_contents(directory: Path, source: Path) -> None:
    for f in directory.iterdir():
        f.unlink()
    for f in source.iterdir():
        shutil.copy2(f, directory / f.name)


def test_reload_refuses_a_bundle_whose_graph_fails_warmup(reload_server: Server, tmp_path: Path) -> None:
    """bundle.json verifies but declares another input size than its graph's: the graph's input
    shape is compared with bundle.json before any warm-up (this used to escape as a 500)."""
    s = reload_server
    serving_sha = s.client().get("/readyz").json()["bundle_sha256"]
    pristine = copy_bundle(s.bundle, tmp_path / "pristine")
    broken = copy_bundle(s.bundle, tmp_path / "broken")
    size = load_bundle(broken).manifest.input.height + 32
    rewrite_manifest(broken, {"input": {"height": size, "width": size}})
    _replace_contents(s.bundle, broken)
    try:
        with s.client() as c:
            r = c.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY})
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["code"] == "bundle_invalid" and "does not match bundle.json" in error["message"]
            assert f"axis 1 is {size - 32}, bundle.json implies {size}" in error["message"]
            assert c.get("/readyz").json()["bundle_sha256"] == serving_sha
            photo = [("files", ("p.jpg", jpeg_bytes(200, 150)))]
            assert c.post("/v1/score", files=photo).json()["model"]["bundle_sha256"] == serving_sha
    finally:
        _replace_contents(s.bundle, pristine)


def test_batch_uploading_across_a_reload_is_served(reload_server: Server) -> None:
    """A batch whose body is still arriving when a reload retires the old model used to start on
    the retired model and fail with 500; it must be served by the new one."""
    s = reload_server
    body = json.dumps(
        {
            "images": [
                {"id": f"i{k}", "data": base64.b64encode(jpeg_bytes(200, 150, seed=k)).decode()}
                for k in range(3)
            ]
        }
    ).encode()
    head = (
        f"POST /v1/score/batch HTTP/1.1\r\nHost: t\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    port = int(s.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head + body[: len(body) // 2])
        time.sleep(0.3)  # the request is routed and reading its body
        with s.client() as c:
            assert c.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
            time.sleep(0.3)  # the old slot had no request holding it: it is retired by now
        conn.sendall(body[len(body) // 2 :])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status == 200, answer[:400]
    results = json.loads(answer.split(b"\r\n\r\n", 1)[1])["results"]
    assert [r["status"] for r in results] == ["ok"] * 3
