"""Measurement harness behind ``authlens bench`` and ``benchmarks/load.py``.

Usage: ``flock /tmp/authlens-heavy.lock authlens bench --bundle bundles/demo --out bench.json``

Three measurements, each side by side in one run so ratios are meaningful:

1. **Decoding**: ``model.imaging.decode_image`` on 1600x1200 and 4000x3000 JPEGs, full
   resolution vs. reduced-scale ("draft") decoding at the bundle's ``draft_size``, plus the
   resize to the model input.
2. **Model**: ONNX Runtime per image at batch 1 and 8, fp32 and (if the bundle has it) INT8.
3. **HTTP load**: a real ``authlens serve`` on loopback, ``concurrency`` clients sending single
   photos to ``/v1/score`` and batches of 8 to ``/v1/score/batch`` for a fixed time; throughput
   and latency percentiles. The clients run on the same machine and take some of its CPU.
"""

from __future__ import annotations

import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model.bundle import load_bundle
from model.imaging import decode_image, resize_for_model

SIZES: tuple[tuple[int, int], ...] = ((1600, 1200), (4000, 3000))


def photo_jpeg(width: int, height: int, *, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG: smooth shading, a few shapes and mild sensor noise (not white noise,
    which would make the file and its decoding unrealistically heavy)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            120 + 80 * np.sin(x / width * 3.1),
            110 + 70 * np.cos(y / height * 2.3),
            100 + 50 * np.sin((x + y) / (width + height) * 6),
        ],
        axis=-1,
    )
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.2) * width
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        base[mask] = base[mask] * 0.5 + rng.uniform(0, 255, 3) * 0.5
    pixels = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _median_ms(fn: Callable[[], object], *, min_runs: int = 5, budget_s: float = 2.0) -> float:
    fn()  # warm
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= 200:
            break
    return statistics.median(times)


def decode_figures(
    draft_size: int, input_size: tuple[int, int], photos: dict[str, bytes]
) -> list[dict[str, Any]]:
    """Median ms of full and draft decoding, and of the resize to the model input, per size."""
    rows = []
    for name, data in photos.items():
        full = _median_ms(partial(decode_image, data))
        draft = _median_ms(partial(decode_image, data, draft_size=draft_size))
        decoded = decode_image(data, draft_size=draft_size)
        resize = _median_ms(partial(resize_for_model, decoded, input_size))
        rows.append(
            {
                "photo": name,
                "bytes": len(data),
                "full_decode_ms": round(full, 2),
                "draft_decode_ms": round(draft, 2),
                "draft_decoded_size": list(decoded.pixels.shape[1::-1]),
                "resize_ms": round(resize, 2),
                "speedup": round(full / draft, 1),
            }
        )
    return rows


def model_figures(path: Path, input_size: tuple[int, int], threads: int) -> dict[str, float]:
    """Median ms per image of the ONNX graph at batch 1 and 8."""
    from model.session import make_session

    session = make_session(path, threads)
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    out = {}
    for batch in (1, 8):
        x = rng.integers(0, 255, (batch, *input_size, 3), dtype=np.uint8)
        out[f"batch{batch}_ms_per_image"] = round(
            _median_ms(partial(session.run, None, {name: x})) / batch, 2
        )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(latencies: list[float], prefix: str = "") -> dict[str, float]:
    if not latencies:
        return {f"{prefix}p50_ms": 0.0, f"{prefix}p95_ms": 0.0, f"{prefix}p99_ms": 0.0}
    q = np.percentile(np.asarray(latencies) * 1000, [50, 95, 99])
    return {
        f"{prefix}p50_ms": round(float(q[0]), 1),
        f"{prefix}p95_ms": round(float(q[1]), 1),
        f"{prefix}p99_ms": round(float(q[2]), 1),
    }


def load_run(
    url: str,
    photo: bytes,
    *,
    batch: int,
    concurrency: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    honour_retry_after: bool = False,
) -> dict[str, Any]:
    """``concurrency`` clients post for ``seconds``: one photo to /v1/score, or ``batch`` photos to
    /v1/score/batch. Returns throughput, latency percentiles of the answered requests (200) and of
    the refused ones (429), and status counts.

    The clients are asyncio tasks on one thread (hundreds of them cost little CPU). By default a
    refused client retries at once, the worst case for the server; ``honour_retry_after`` makes
    it wait the ``Retry-After`` seconds first, as a well-behaved crawler would.
    """
    import asyncio

    import httpx

    ok: list[float] = []
    refused: list[float] = []
    statuses: dict[int, int] = {}
    if batch == 1:
        route, files = "/v1/score", [("files", ("p.jpg", photo, "image/jpeg"))]
    else:
        route, files = (
            "/v1/score/batch",
            [("files", (f"p{i}.jpg", photo, "image/jpeg")) for i in range(batch)],
        )

    async def client(c: httpx.AsyncClient, stop: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < stop:
            t = time.perf_counter()
            try:
                r = await c.post(route, files=files)
            except httpx.HTTPError:
                statuses[0] = statuses.get(0, 0) + 1  # 0: connection failed or timed out
                continue
            dt = time.perf_counter() - t
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                ok.append(dt)
            elif r.status_code == 429:
                refused.append(dt)
                if honour_retry_after:
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))

    async def main() -> float:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=120, headers=headers or {}, limits=limits) as c:
            start = time.perf_counter()
            stop = asyncio.get_running_loop().time() + seconds
            await asyncio.gather(*(client(c, stop) for _ in range(concurrency)))
            return time.perf_counter() - start

    wall = asyncio.run(main())
    return {
        "batch": batch,
        "concurrency": concurrency,
        "seconds": round(wall, 1),
        "requests_ok": len(ok),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "requests_per_s": round(len(ok) / wall, 2),
        "images_per_s": round(len(ok) * batch / wall, 2),
        **_percentiles(ok),
        **_percentiles(refused, "refused_"),
    }


def start_server(
    bundle: Path, log: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``authlens serve`` on a free loopback port with extra ``AUTHLENS_*`` settings and wait
    until it is ready; returns the process and its URL."""
    import httpx

    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AUTHLENS_")}, **(env or {})}
    env.setdefault("AUTHLENS_LOG_LEVEL", "WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "authlens", "serve", "--bundle", str(bundle), "--port", str(port)],
        env=env,
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"authlens serve exited: {log.read_text()}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("authlens serve did not become ready")


def run_bench(
    bundle_dir: Path,
    *,
    seconds: float = 15.0,
    concurrency: int = 4,
    load: bool = True,
    int8_path: Path | None = None,
) -> dict[str, Any]:
    """Run every measurement, print tables, and return the figures.

    Args:
        bundle_dir: The bundle to measure.
        seconds: Duration of each load run.
        concurrency: Concurrent clients in the load runs.
        load: Whether to run the HTTP load runs.
        int8_path: An INT8 graph to time when the bundle has none.
    """
    import logging

    from rich.console import Console
    from rich.table import Table

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    console = Console(stderr=True, width=120)
    bundle = load_bundle(bundle_dir)
    spec = bundle.manifest.input
    input_size = (spec.height, spec.width)
    threads = os.cpu_count() or 1
    photos = {f"{w}x{h}": photo_jpeg(w, h) for w, h in SIZES}
    report: dict[str, Any] = {
        "machine": {
            "cpus": threads,
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "bundle": {
            "name": bundle.manifest.name,
            "sha256": bundle.sha256,
            "input": list(input_size),
            "draft_size": spec.draft_size,
        },
    }
    console.print(
        f"bench: bundle {bundle.manifest.name} {input_size[0]}px, draft_size {spec.draft_size}, {threads} cpus"
    )
    report["decode"] = decode_figures(spec.draft_size, input_size, photos)
    report["model"] = {"fp32": model_figures(bundle.onnx_path(), input_size, threads)}
    int8 = bundle.onnx_path(int8=True) if bundle.manifest.int8 is not None else int8_path
    if int8 is not None:
        report["model"]["int8"] = model_figures(int8, input_size, threads)

    t = Table(title="decode (median ms per photo)")
    for col in ("photo", "bytes", "full", "draft", "draft size", "resize", "full/draft"):
        t.add_column(col, justify="right")
    for r in report["decode"]:
        t.add_row(
            r["photo"], str(r["bytes"]), str(r["full_decode_ms"]), str(r["draft_decode_ms"]),
            "x".join(map(str, r["draft_decoded_size"])), str(r["resize_ms"]), f"{r['speedup']}x",
        )  # fmt: skip
    console.print(t)
    t = Table(title="model (median ms per image)")
    for col in ("graph", "batch 1", "batch 8"):
        t.add_column(col, justify="right")
    for name, m in report["model"].items():
        t.add_row(name, str(m["batch1_ms_per_image"]), str(m["batch8_ms_per_image"]))
    console.print(t)

    if load:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = start_server(bundle_dir, Path(tmp) / "serve.log")
            try:
                runs = []
                for name, data in photos.items():
                    for batch in (1, 8):
                        console.print(f"load: {name} batch {batch}, {concurrency} clients, {seconds:.0f} s")
                        runs.append(
                            {
                                "photo": name,
                                **load_run(url, data, batch=batch, concurrency=concurrency, seconds=seconds),
                            }
                        )
            finally:
                proc.terminate()
                proc.wait(60)
        report["load"] = runs
        t = Table(title=f"HTTP load on loopback ({concurrency} concurrent clients)")
        for col in ("photo", "photos/request", "req/s", "photos/s", "p50 ms", "p95 ms", "p99 ms", "statuses"):
            t.add_column(col, justify="right")
        for r in runs:
            t.add_row(
                r["photo"], str(r["batch"]), str(r["requests_per_s"]), str(r["images_per_s"]),
                str(r["p50_ms"]), str(r["p95_ms"]), str(r["p99_ms"]), str(r["statuses"]),
            )  # fmt: skip
        console.print(t)
    return report
