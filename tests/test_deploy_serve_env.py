"""The ``serve`` image without Docker: a fresh virtualenv with only ``.[serve]`` (as the Dockerfile's
serve stage installs it, from the sources it copies) serves a bundle and scores a photo, and torch is
not installed there."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from factories import jpeg_bytes

ROOT = Path(__file__).resolve().parents[1]


def _stage(dockerfile: str, name: str) -> str:
    """The instructions of one build stage (from its FROM line to the next)."""
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S)
    assert match, f"Dockerfile has no stage {name}"
    return match.group(1)


def _copied_sources(dockerfile: str) -> list[str]:
    """What the ``source`` stage copies from the build context."""
    sources: list[str] = []
    for line in _stage(dockerfile, "source").splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    return sources


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def test_serve_extra_alone_serves_a_photo_without_torch(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert '-c constraints.txt ".[serve]"' in _stage(dockerfile, "build-serve")
    src = tmp_path / "src"
    src.mkdir()
    for name in _copied_sources(dockerfile):
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, src / name)

    started = time.perf_counter()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AUTHLENS_", "PYTHONPATH", "VIRTUAL_ENV"))
    }
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "-c", "constraints.txt", ".[serve]"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    install_s = time.perf_counter() - started
    size_mb = _du(venv) / 2**20
    print(f"serve-only virtualenv: installed in {install_s:.0f} s, {size_mb:.0f} MiB")

    for heavy in ("torch", "timm", "albumentations", "ray"):
        probe = subprocess.run([str(py), "-c", f"import {heavy}"], cwd=tmp_path, env=env, capture_output=True)
        assert probe.returncode != 0, f"{heavy} is installed in the serve-only environment"

    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(venv / "bin" / "authlens"), "serve", "--bundle", str(tiny_bundle_dir), "--port", str(port)],
        cwd=tmp_path,  # not the repository: the installed package must be complete
        env={**env, "AUTHLENS_LOG_FORMAT": "text"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.25)
        r = httpx.post(
            url + "/v1/score", files=[("files", ("a.jpg", jpeg_bytes(320, 240), "image/jpeg"))], timeout=60
        )
        assert r.status_code == 200, r.text
        assert r.json()["item"]["verdict"] in ("genuine", "counterfeit", "inconclusive")
        assert httpx.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()
    assert server.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after draining
