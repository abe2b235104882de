"""Measurement pieces behind ``authlens bench``, ``benchmarks/load.py`` and ``make bench``.

Usage: ``flock /tmp/authlens-heavy.lock authlens bench --bundle bundles/demo --out bench.json``

This module is the one source of the shared pieces (no torch here: it runs in a serve-only
install); the full harness (``benchmarks/harness.py``, ``make bench``) imports them:

* the photo maker (:func:`photo_pixels`, :func:`photo_bytes`, :func:`photo_jpeg`): photo-like
  pictures in JPEG, PNG, WebP and HEIC;
* timing (:func:`median_ms`), decode and model figures (:func:`decode_figures`,
  :func:`model_figures`);
* the load generator (:func:`load_run`): closed-loop clients or an open loop at a fixed rate,
  on raw keep-alive HTTP/1.1 connections with the request bytes built once, in a child process
  pinned to one core (``python -m serving.bench loadgen SPEC``) that reports its own CPU time;
* starting a server and timing its start (:func:`launch`, :func:`start_server`), and its memory
  (:func:`proc_memory`).

``authlens bench`` is the quick subset: decoding (full vs reduced-scale), ONNX Runtime per image
at batch 1 and 8, and a few HTTP load runs against a real ``authlens serve`` on loopback.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from model.bundle import load_bundle
from model.imaging import decode_image, resize_for_model

SIZES: tuple[tuple[int, int], ...] = ((1600, 1200), (4000, 3000))
PHOTO_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIC")
BOUNDARY = "authlensBenchBoundary"
REFUSED = (429, 503)
"""Statuses a server answers when it sheds load; anything else but 200 is an error."""


# Photos ----------------------------------------------------------------------------------------


def photo_pixels(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """``(height, width, 3)`` uint8 photo-like pixels: smooth shading, a few shapes and mild
    sensor noise (not white noise, which would make files and decoding unrealistically heavy)."""
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
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def encode_photo(pixels: np.ndarray, fmt: str = "JPEG") -> bytes:
    """Encode ``(H, W, 3)`` uint8 pixels as a phone or a website would.

    JPEG quality 90; PNG compression level 6; WebP quality 85; HEIC quality 80 with x265's
    ``ultrafast`` preset (encoding a 12 MP HEIC otherwise takes half a minute here; phones encode
    in hardware with similarly few tools).

    Raises:
        ValueError: an unknown format (the message lists :data:`PHOTO_FORMATS`).
    """
    fmt = fmt.upper()
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=90)
    elif fmt == "PNG":
        img.save(buf, "PNG", compress_level=6)
    elif fmt == "WEBP":
        img.save(buf, "WEBP", quality=85)
    elif fmt in ("HEIC", "HEIF"):
        from pillow_heif import register_heif_opener

        register_heif_opener()
        img.save(buf, "HEIF", quality=80, enc_params={"preset": "ultrafast"})
    else:
        raise ValueError(f"Unknown photo format {fmt!r}. Allowed: {', '.join(PHOTO_FORMATS)}.")
    return buf.getvalue()


def photo_bytes(width: int, height: int, fmt: str = "JPEG", *, seed: int = 0) -> bytes:
    """A photo-like picture of ``width`` x ``height`` in ``fmt`` (see :func:`encode_photo`)."""
    return encode_photo(photo_pixels(width, height, seed=seed), fmt)


def photo_jpeg(width: int, height: int, *, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG (see :func:`photo_pixels`)."""
    buf = io.BytesIO()
    Image.fromarray(photo_pixels(width, height, seed=seed)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# Timing ----------------------------------------------------------------------------------------


def median_ms(
    fn: Callable[[], object], *, min_runs: int = 5, budget_s: float = 2.0, max_runs: int = 200
) -> float:
    """Median milliseconds of ``fn()`` after one warm call: at least ``min_runs`` runs, more
    while ``budget_s`` lasts, at most ``max_runs``."""
    fn()  # warm
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= max_runs:
            break
    return statistics.median(times)


def decode_figures(
    draft_size: int,
    input_size: tuple[int, int],
    photos: dict[str, bytes],
    *,
    budget_s: float = 2.0,
) -> list[dict[str, Any]]:
    """Median ms of full and reduced-scale ("draft") decoding and of the resize to the model input,
    per photo, on this thread. Only JPEGs decode at reduced scale; other formats give the same
    figure twice."""
    rows = []
    for name, data in photos.items():
        full = median_ms(partial(decode_image, data), budget_s=budget_s)
        decoded = decode_image(data, draft_size=draft_size)
        is_jpeg = decoded.format == "JPEG"
        draft = (
            median_ms(partial(decode_image, data, draft_size=draft_size), budget_s=budget_s)
            if is_jpeg
            else full
        )
        resize = median_ms(partial(resize_for_model, decoded, input_size), budget_s=budget_s)
        rows.append(
            {
                "photo": name,
                "format": decoded.format,
                "size": list(decoded.original_size),
                "bytes": len(data),
                "full_decode_ms": round(full, 2),
                "draft_decode_ms": round(draft, 2),
                "draft_decoded_size": list(decoded.pixels.shape[1::-1]),
                "resize_ms": round(resize, 2),
                "speedup": round(full / draft, 1),
            }
        )
    return rows


def model_figures(
    path: Path,
    input_size: tuple[int, int],
    threads: int,
    *,
    batches: Sequence[int] = (1, 8),
    budget_s: float = 2.0,
) -> dict[str, float]:
    """Median ms per image of the ONNX graph at each batch size (random pixels)."""
    from model.session import make_session

    session = make_session(path, threads)
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    out = {}
    for batch in batches:
        x = rng.integers(0, 255, (batch, *input_size, 3), dtype=np.uint8)
        ms = median_ms(partial(session.run, None, {name: x}), budget_s=budget_s)
        out[f"batch{batch}_ms_per_image"] = round(ms / batch, 2)
    return out


def percentiles(latencies: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50, p95, p99 and max in ms of latencies in seconds (zeros when there are none)."""
    keys = [f"{prefix}p50_ms", f"{prefix}p95_ms", f"{prefix}p99_ms", f"{prefix}max_ms"]
    if not len(latencies):
        return dict.fromkeys(keys, 0.0)
    q = np.percentile(np.asarray(latencies) * 1000, [50, 95, 99, 100])
    return {k: round(float(v), 1) for k, v in zip(keys, q, strict=True)}


# Load generator --------------------------------------------------------------------------------


def multipart_request(
    host: str, port: int, route: str, photos: Sequence[bytes], headers: dict[str, str] | None = None
) -> bytes:
    """The whole bytes of a ``POST`` with each photo as a ``files`` part (unique file names),
    keep-alive: built once, sent as is by every request of a load run."""
    parts = [
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="p{i}.jpg"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + photo
        + b"\r\n"
        for i, photo in enumerate(photos)
    ]
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    lines = [
        f"POST {route} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class _Shot:
    start: float  # perf_counter when sent (open loop: when scheduled)
    end: float
    status: int  # 0: no answer (connection failed, reset, timed out)
    retry_after: float | None = None
    image_errors: int = 0


class _Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.open = True

    @classmethod
    async def connect(cls, host: str, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return cls(reader, writer)

    def close(self) -> None:
        self.open = False
        self.writer.close()

    async def send(self, payload: bytes) -> tuple[int, float | None, bytes]:
        """Send a whole request and read its answer: status, Retry-After, body."""
        self.writer.write(payload)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k:
                fields[k.strip().lower()] = v.strip()
        if "content-length" in fields:
            body = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunks.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(chunks)
        else:
            body = await self.reader.read()
            self.open = False
        if fields.get("connection", "").lower() == "close":
            self.close()
        retry = fields.get("retry-after")
        return status, float(retry) if retry and retry.replace(".", "", 1).isdigit() else None, body


async def _load(spec: dict[str, Any], payload: bytes) -> tuple[list[_Shot], int, float, float, float]:
    """Run the clients of ``spec``; returns every shot, the requests still unanswered when the
    drain time ran out, the measured window (perf_counter) and the warm-up it took."""
    host, port = spec["host"], int(spec["port"])
    warmup, seconds = float(spec["warmup_s"]), float(spec["seconds"])
    timeout = float(spec.get("timeout_s", 120.0))
    drain = float(spec.get("drain_s", 60.0))
    honour = bool(spec.get("honour_retry_after", False))
    batch_route = spec["batch"] > 1
    shots: list[_Shot] = []
    idle: list[_Conn] = []
    in_flight: dict[int, float] = {}  # id -> start of requests sent and not answered yet
    ids = itertools.count()

    async def shoot(start: float) -> _Shot:
        conn = idle.pop() if idle else None
        key = next(ids)
        in_flight[key] = start
        try:
            async with asyncio.timeout(timeout):
                if conn is None:
                    conn = await _Conn.connect(host, port)
                status, retry_after, body = await conn.send(payload)
            if conn.open:
                idle.append(conn)
            errors = body.count(b'"status":"error"') if batch_route and status == 200 else 0
            shot = _Shot(start, time.perf_counter(), status, retry_after, errors)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
            IndexError,
        ):
            if conn is not None:
                conn.close()
            shot = _Shot(start, time.perf_counter(), 0)
        in_flight.pop(key, None)
        shots.append(shot)
        return shot

    begin = time.perf_counter()
    window = [begin + warmup, begin + warmup + seconds]
    tasks: list[asyncio.Task[Any]] = []
    if spec.get("rate"):  # open loop: evenly spaced arrivals, whatever the answers
        rate = float(spec["rate"])
        for i in range(max(1, int(rate * (warmup + seconds)))):
            due = begin + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(shoot(due)))
    else:
        # Closed loop: the warm-up lasts warmup_s and until every client has had an answer (a slow
        # server's queue is full only then), at most max_warmup_s; then the window starts.
        clients = int(spec["concurrency"])
        answered: set[int] = set()
        max_warmup = float(spec.get("max_warmup_s", 60.0))
        window[1] = float("inf")

        def steady() -> None:
            now = time.perf_counter()
            ready = len(answered) == clients or now >= begin + max_warmup
            if window[1] == float("inf") and now >= begin + warmup and ready:
                window[0], window[1] = now, now + seconds

        async def client(i: int) -> None:
            while time.perf_counter() < window[1]:
                shot = await shoot(time.perf_counter())
                answered.add(i)
                steady()
                if honour and shot.status in REFUSED:
                    await asyncio.sleep(shot.retry_after or 1.0)

        async def ticker() -> None:
            while window[1] == float("inf"):
                steady()
                await asyncio.sleep(0.01)

        tasks = [asyncio.ensure_future(client(i)) for i in range(clients)]
        await ticker()
    # requests sent inside the window are waited for, at most ``drain`` seconds past its end
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, window[1] + drain - time.perf_counter()))
    unfinished = sum(1 for start in in_flight.values() if start >= window[0])
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for conn in idle:
        conn.close()
    return shots, unfinished, window[0], window[1], window[0] - begin


def _summary(
    spec: dict[str, Any], shots: list[_Shot], unfinished: int, window: tuple[float, float], warmup: float
) -> dict[str, Any]:
    lo, hi = window
    measured = [s for s in shots if s.start >= lo]
    seconds = hi - lo
    ok = [s for s in measured if s.status == 200]
    done_in_window = sum(1 for s in shots if s.status == 200 and lo <= s.end <= hi)
    refused = [s for s in measured if s.status in REFUSED]
    statuses: dict[str, int] = {}
    for s in measured:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    return {
        "batch": spec["batch"],
        "concurrency": spec["concurrency"],
        "rate_per_s": spec.get("rate"),
        "seconds": round(seconds, 1),
        "warmup_s": round(warmup, 1),
        "sent": len(measured),
        "requests_ok": len(ok),
        "refused": len(refused),
        "errors": len(measured) - len(ok) - len(refused),
        "unfinished": unfinished,  # still unanswered drain_s after the window: left out of the latencies
        "image_errors": sum(s.image_errors for s in ok),
        "statuses": dict(sorted(statuses.items())),
        "requests_per_s": round(done_in_window / seconds, 2),
        "images_per_s": round(done_in_window * spec["batch"] / seconds, 2),
        **percentiles([s.end - s.start for s in ok]),
        **percentiles([s.end - s.start for s in refused], "refused_"),
    }


def _loadgen_main(spec_path: Path) -> None:
    """The load generator's process: pin, run, print the summary with its own CPU time as JSON."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if spec.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(spec["cpu"])})
    payload = Path(spec["payload"]).read_bytes()
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        shots, unfinished, lo, hi, warmup = runner.run(_load(spec, payload))
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out = _summary(spec, shots, unfinished, (lo, hi), warmup)
    out["client"] = {
        "pinned_cpu": spec.get("cpu"),
        "event_loop": "uvloop" if loop_factory else "asyncio",
        "cpu_s": round(cpu, 2),
        "cores": round(cpu / wall, 3),  # share of one core the generator used while it ran
        "cpu_ms_per_request": round(1000 * cpu / max(1, len(shots)), 2),
    }
    print(json.dumps(out))


def loadgen_cpu() -> int | None:
    """The core the load generator is pinned to: the last this process may use (None: no pinning)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


def load_run(
    url: str,
    photo: bytes | Sequence[bytes],
    *,
    batch: int,
    concurrency: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    honour_retry_after: bool = False,
    rate: float | None = None,
    warmup_s: float = 0.0,
    pin: bool = True,
    route: str | None = None,
    drain_s: float = 60.0,
    max_warmup_s: float = 60.0,
) -> dict[str, Any]:
    """Load ``url`` for ``seconds`` from a child process and return throughput and latencies.

    Closed loop (default): ``concurrency`` clients, each sending its next request when its last
    is answered. Open loop (``rate``): requests evenly spaced at ``rate`` per second whatever the
    answers, latency counted from when each was due. Requests are one photo to ``/v1/score``, or
    ``batch`` photos to ``/v1/score/batch``, on keep-alive connections; the request's bytes are
    built once. ``warmup_s`` of the same load runs first and is not counted (closed loop: and until
    every client has had an answer, at most ``max_warmup_s``, so a slow server's queue is full when
    the window starts). Requests sent in the
    window are waited for at most ``drain_s`` after it; those still unanswered then are counted as
    ``unfinished`` and left out of the latencies.

    By default a refused client (429, 503) retries at once, the worst case for the server;
    ``honour_retry_after`` makes it wait the ``Retry-After`` seconds first.

    Returns:
        Requests sent, answered (200), refused, failed and unfinished; answered requests and images per second
        in the window; latency percentiles of the answered and refused requests; status counts;
        ``image_errors`` (per-image errors inside answered batch calls); and ``client``: the
        generator's own CPU time, the core it was pinned to (``pin``), its cores used.
    """
    host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
    photos = [photo] * batch if isinstance(photo, bytes) else list(photo)
    if route is None:
        route = "/v1/score" if batch == 1 else "/v1/score/batch"
    with tempfile.TemporaryDirectory(prefix="authlens-loadgen-") as tmp:
        payload = Path(tmp) / "request.bin"
        payload.write_bytes(multipart_request(host, int(port), route, photos, headers))
        spec = {
            "host": host,
            "port": int(port),
            "batch": len(photos),
            "concurrency": concurrency,
            "seconds": seconds,
            "warmup_s": warmup_s,
            "rate": rate,
            "honour_retry_after": honour_retry_after,
            "drain_s": drain_s,
            "max_warmup_s": max(warmup_s, max_warmup_s),
            "payload": str(payload),
            "cpu": loadgen_cpu() if pin else None,
        }
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "serving.bench", "loadgen", str(spec_path)],
            capture_output=True,
            text=True,
            timeout=max(warmup_s, max_warmup_s) + seconds + drain_s + 300,
            cwd=Path(__file__).resolve().parents[1],
        )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# Servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Launched:
    """A server process started by :func:`launch`: its URL and how long it took to be ready."""

    process: subprocess.Popen[bytes]
    url: str
    ready_s: float  # from just before the process was started to the first 200 from /readyz
    log: Path

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, then wait (SIGKILL if it does not exit in ``timeout``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def launch(
    cmd: Sequence[str],
    port: int,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout_s: float = 120.0,
) -> Launched:
    """Start a server process listening on ``port`` and poll ``/readyz`` every 20 ms until it
    answers 200.

    Raises:
        RuntimeError: the process exited or was not ready in time (with its log).
    """
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        env=env,
        cwd=cwd,
        stdout=open(log, "wb"),  # noqa: SIM115 (kept open for the process's life)
        stderr=subprocess.STDOUT,
    )
    while time.perf_counter() - start < ready_timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return Launched(proc, url, time.perf_counter() - start, log)
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    proc.terminate()
    proc.wait(30)
    raise RuntimeError(f"{' '.join(cmd[:4])} did not become ready in {ready_timeout_s:.0f} s")


def serve_command(bundle: Path, port: int) -> list[str]:
    """``authlens serve`` on loopback at ``port``, as this interpreter runs it."""
    return [sys.executable, "-m", "authlens", "serve", "--bundle", str(bundle), "--port", str(port)]


def serve_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without ``AUTHLENS_*`` settings, plus ``env``; warnings-only logs."""
    out = {**{k: v for k, v in os.environ.items() if not k.startswith("AUTHLENS_")}, **(env or {})}
    out.setdefault("AUTHLENS_LOG_LEVEL", "WARNING")
    return out


def launch_server(bundle: Path, log: Path, env: dict[str, str] | None = None) -> Launched:
    """Start ``authlens serve`` on a free loopback port with extra ``AUTHLENS_*`` settings."""
    port = free_port()
    return launch(serve_command(bundle, port), port, log, env=serve_env(env))


def start_server(
    bundle: Path, log: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``authlens serve`` on a free loopback port with extra ``AUTHLENS_*`` settings and wait
    until it is ready; returns the process and its URL."""
    s = launch_server(bundle, log, env)
    return s.process, s.url


def proc_memory(pid: int) -> dict[str, float]:
    """A process's resident memory now and at its peak (``VmRSS``, ``VmHWM``), in MB (10^6 bytes)."""
    out = {"rss_mb": 0.0, "peak_rss_mb": 0.0}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = round(int(value.split()[0]) * 1024 / 1e6, 1)
    return out


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's peak resident set (``VmHWM``) to its current one, so that the peak of
    what follows can be read; False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# authlens bench --------------------------------------------------------------------------------


def run_bench(
    bundle_dir: Path,
    *,
    seconds: float = 15.0,
    concurrency: int = 4,
    load: bool = True,
    int8_path: Path | None = None,
) -> dict[str, Any]:
    """The quick subset (``authlens bench``): decoding, model, HTTP load; prints tables and
    returns the figures. ``make bench`` (``benchmarks/harness.py``) is the whole measurement.

    Args:
        bundle_dir: The bundle to measure.
        seconds: Duration of each load run.
        concurrency: Concurrent clients in the load runs.
        load: Whether to run the HTTP load runs.
        int8_path: An INT8 graph to time when the bundle has none.
    """
    from rich.console import Console
    from rich.table import Table

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
            server = launch_server(bundle_dir, Path(tmp) / "serve.log")
            try:
                runs = []
                for name, data in photos.items():
                    for batch in (1, 8):
                        console.print(f"load: {name} batch {batch}, {concurrency} clients, {seconds:.0f} s")
                        runs.append(
                            {
                                "photo": name,
                                **load_run(
                                    server.url, data, batch=batch, concurrency=concurrency, seconds=seconds
                                ),
                            }
                        )
            finally:
                server.stop()
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


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "loadgen":
        _loadgen_main(Path(sys.argv[2]))
    else:
        raise SystemExit(
            "usage: python -m serving.bench loadgen SPEC.json (started by serving.bench.load_run)"
        )
