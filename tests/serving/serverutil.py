"""Helpers for serving tests: start and stop a real ``authlens serve`` on loopback, test keys."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
AUTHLENS = [sys.executable, "-m", "authlens"]
API_KEY = "test-api-key-0123456789"
ADMIN_KEY = "test-admin-key-9876543210"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ``authlens serve``: its URL, bundle directory, process and log file."""

    url: str
    bundle: Path
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, key: str | None = API_KEY, **kwargs: object) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(
    bundle: Path, log: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None
) -> Server:
    """Start ``authlens serve`` on a free loopback port and wait until /readyz answers 200."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLENS_")}
    full_env.update({"AUTHLENS_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1", **(env or {})})
    handle = open(log, "wb")  # noqa: SIM115 (kept open for the process's life)
    process = subprocess.Popen(
        [*AUTHLENS, "serve", "--bundle", str(bundle), "--port", str(port), *(args or [])],
        cwd=ROOT,
        env=full_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", bundle, process, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"authlens serve exited with {process.returncode}:\n{server.logs()}")
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"authlens serve did not become ready in 90 s:\n{server.logs()}")


def stop_server(server: Server, timeout: float = 30) -> int:
    """SIGTERM (graceful shutdown) and wait; returns the exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
