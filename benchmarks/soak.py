"""Soak and overload an authlens server: capacity first, then steady load below it, then far above it.

Usage::

    python benchmarks/soak.py --bundle bundles/demo --soak-s 600 --overload-s 120   # make soak
    python benchmarks/soak.py --url http://127.0.0.1:8000 --pid 1234 --soak-s 60    # a running server

Phases (one server, in order):

1. **capacity**: ``--clients`` closed-loop clients post one photo each to ``/v1/score`` for a
   few seconds (an estimate), then an open loop at twice that estimate runs for ``--capacity-s``:
   capacity = the answered requests per second the saturated server sustains. (A closed loop
   overstates what an open loop of evenly spaced requests can get: its concurrent requests share
   model calls.)
2. **soak**: an open loop at ``--soak-load`` (0.8) x capacity, evenly spaced, for ``--soak-s``.
   Every answer must be 200; the server's RSS is sampled each second and its growth is measured
   from the end of the first quarter (warm-up: allocator pools, ORT arenas) to the end.
3. **overload**: an open loop at ``--overload-load`` (3) x capacity for ``--overload-s``:
   accepted requests (200) must keep a bounded p99; the rest must be refused with 429 or 503
   and ``Retry-After``; nothing else.
4. **recovery**: ``--recovery-s`` at half capacity right after: every answer 200 again.

Requests go over raw asyncio sockets (one connection each, ``Connection: close``) with
``Expect: 100-continue``, so a request refused before its body is read (429 from the pipeline or
body-budget gate) costs neither side the upload, as with any HTTP client that sends large bodies
politely. Open loops keep sending at their rate whatever the server does: latency includes any
wait for the server to accept the connection.

Run it on a quiet machine (``flock /tmp/authlens-heavy.lock ...``): the clients share the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BOUNDARY = "soakBoundary"


@dataclass
class Shot:
    """One request's outcome: status (0 = no answer), seconds, Retry-After, the error if any."""

    status: int
    seconds: float
    retry_after: str | None = None
    error: str | None = None
    started: float = 0.0  # time.monotonic() when sent


def score_request(host: str, port: int, photo: bytes, key: str | None = None) -> tuple[bytes, bytes]:
    """Head (with ``Expect: 100-continue``) and body of a one-photo ``POST /v1/score``."""
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    lines = [
        "POST /v1/score HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: close",
        "Expect: 100-continue",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        f"Content-Length: {len(body)}",
    ]
    if key:
        lines.append(f"X-API-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k:
            headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers


async def shoot(host: str, port: int, head: bytes, body: bytes, timeout: float = 120.0) -> Shot:
    """Send one request and read its answer to the end."""
    t = time.perf_counter()
    started = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(head)
            await writer.drain()
            status, headers = await _head(reader)
            if status == 100:
                writer.write(body)
                await writer.drain()
                status, headers = await _head(reader)
            await reader.read()  # Connection: close: the answer ends at EOF
        return Shot(status, time.perf_counter() - t, headers.get("retry-after"), started=started)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError) as exc:
        return Shot(0, time.perf_counter() - t, error=type(exc).__name__, started=started)
    finally:
        if writer is not None:
            writer.close()


async def closed_loop(
    host: str, port: int, req: tuple[bytes, bytes], clients: int, seconds: float
) -> list[Shot]:
    """``clients`` clients, each sending its next request when the last one is answered."""
    shots: list[Shot] = []
    stop = asyncio.get_running_loop().time() + seconds

    async def client() -> None:
        while asyncio.get_running_loop().time() < stop:
            shots.append(await shoot(host, port, *req))

    await asyncio.gather(*(client() for _ in range(clients)))
    return shots


async def open_loop(
    host: str, port: int, req: tuple[bytes, bytes], rate: float, seconds: float
) -> list[Shot]:
    """``rate`` requests per second, evenly spaced, for ``seconds``, whatever the answers."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for i in range(max(1, int(rate * seconds))):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(shoot(host, port, *req)))
    return list(await asyncio.gather(*tasks))


class RssSampler:
    """Samples a process's RSS (``/proc/PID/status``) once a second while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), self.rss()))
            await asyncio.sleep(1.0)

    def start(self) -> None:
        self.samples.clear()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.samples.append((time.monotonic(), self.rss()))


def summarise(shots: list[Shot], seconds: float) -> dict[str, Any]:
    """Counts by status, and latency percentiles of the answered (200) and refused requests."""
    statuses: dict[str, int] = {}
    for s in shots:
        key = str(s.status) if s.status else f"error:{s.error}"
        statuses[key] = statuses.get(key, 0) + 1

    def pct(values: list[float]) -> dict[str, float]:
        if not values:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        q = np.percentile(np.asarray(values) * 1000, [50, 99])
        return {
            "p50_ms": round(float(q[0]), 1),
            "p99_ms": round(float(q[1]), 1),
            "max_ms": round(max(values) * 1000, 1),
        }

    refused = [s for s in shots if s.status in (429, 503)]
    return {
        "sent": len(shots),
        "seconds": round(seconds, 1),
        "ok": sum(s.status == 200 for s in shots),
        "refused": len(refused),
        "refused_with_retry_after": sum(s.retry_after is not None for s in refused),
        "errors": sum(s.status not in (200, 429, 503) for s in shots),
        "statuses": dict(sorted(statuses.items())),
        "ok_latency": pct([s.seconds for s in shots if s.status == 200]),
        "refused_latency": pct([s.seconds for s in refused]),
    }


async def run_phases(
    url: str,
    pid: int,
    photo: bytes,
    *,
    key: str | None = None,
    clients: int = 4,
    capacity_s: float = 10.0,
    soak_load: float = 0.8,
    soak_s: float = 60.0,
    overload_load: float = 3.0,
    overload_s: float = 30.0,
    recovery_s: float = 10.0,
) -> dict[str, Any]:
    """Capacity, soak, overload and recovery against the server at ``url`` (process ``pid``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    req = score_request(host, int(port), photo, key)
    rss = RssSampler(pid)
    report: dict[str, Any] = {"photo_bytes": len(photo)}

    await closed_loop(host, int(port), req, clients, 2.0)  # warm-up, not counted
    t = time.monotonic()
    shots = await closed_loop(host, int(port), req, clients, 4.0)
    estimate = sum(s.status == 200 for s in shots) / (time.monotonic() - t)
    t = time.monotonic()
    shots = await open_loop(host, int(port), req, 2 * estimate, capacity_s)
    wall = time.monotonic() - t
    capacity = sum(s.status == 200 for s in shots) / wall
    report["capacity"] = {
        "requests_per_s": round(capacity, 1),
        "closed_loop_requests_per_s": round(estimate, 1),
        "clients": clients,
        "saturating_rate_per_s": round(2 * estimate, 1),
        **summarise(shots, wall),
    }
    await asyncio.sleep(2.0)  # let the saturated server drain before the soak

    if soak_s > 0:
        rate = soak_load * capacity
        rss.start()
        t = time.monotonic()
        shots = await open_loop(host, int(port), req, rate, soak_s)
        wall = time.monotonic() - t
        await rss.stop()
        samples = rss.samples
        warm = samples[max(1, len(samples) // 4) - 1][1]  # RSS at the end of the first quarter
        end = samples[-1][1]
        report["soak"] = {
            "load": soak_load,
            "rate_per_s": round(rate, 1),
            **summarise(shots, wall),
            "rss_start_mib": round(samples[0][1] / 2**20, 1),
            "rss_after_warmup_mib": round(warm / 2**20, 1),
            "rss_end_mib": round(end / 2**20, 1),
            "rss_peak_mib": round(max(v for _, v in samples) / 2**20, 1),
            "rss_growth_pct": round(100 * (end - warm) / warm, 2),
        }

    if overload_s > 0:
        rate = overload_load * capacity
        t = time.monotonic()
        shots = await open_loop(host, int(port), req, rate, overload_s)
        report["overload"] = {
            "load": overload_load,
            "rate_per_s": round(rate, 1),
            **summarise(shots, time.monotonic() - t),
        }
        t = time.monotonic()
        shots = await open_loop(host, int(port), req, 0.5 * capacity, recovery_s)
        report["recovery"] = {
            "load": 0.5,
            "rate_per_s": round(0.5 * capacity, 1),
            **summarise(shots, time.monotonic() - t),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--bundle", type=Path, help="Start authlens serve on this bundle (loopback, defaults)."
    )
    target.add_argument("--url", help="A running server on this machine (give --pid for its RSS).")
    parser.add_argument("--pid", type=int, help="The running server's process id (with --url).")
    parser.add_argument("--key", help="API key to send.")
    parser.add_argument("--size", default="1280x960", help="Photo size WxH (generated JPEG).")
    parser.add_argument("--clients", type=int, default=4, help="Closed-loop clients measuring capacity.")
    parser.add_argument("--capacity-s", type=float, default=15.0)
    parser.add_argument("--soak-load", type=float, default=0.8)
    parser.add_argument("--soak-s", type=float, default=600.0)
    parser.add_argument("--overload-load", type=float, default=3.0)
    parser.add_argument("--overload-s", type=float, default=120.0)
    parser.add_argument("--recovery-s", type=float, default=30.0)
    parser.add_argument("--out", type=Path, help="Also write the report as JSON.")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from serving.bench import photo_jpeg, start_server

    w, h = (int(v) for v in args.size.lower().split("x"))
    photo = photo_jpeg(w, h)
    proc = None
    try:
        if args.bundle is not None:
            log = Path(tempfile.mkdtemp(prefix="authlens-soak-")) / "serve.log"
            proc, url = start_server(args.bundle, log)
            pid = proc.pid
        else:
            if args.pid is None:
                parser.error("--url needs --pid (the server's RSS is part of the report)")
            url, pid = args.url, args.pid
        report = asyncio.run(
            run_phases(
                url,
                pid,
                photo,
                key=args.key,
                clients=args.clients,
                capacity_s=args.capacity_s,
                soak_load=args.soak_load,
                soak_s=args.soak_s,
                overload_load=args.overload_load,
                overload_s=args.overload_s,
                recovery_s=args.recovery_s,
            )
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    soak = report.get("soak", {})
    over = report.get("overload", {})
    failed = soak.get("errors", 0) or soak.get("refused", 0) or over.get("errors", 0)
    failed = failed or report.get("recovery", {}).get("errors", 0) or soak.get("rss_growth_pct", 0) >= 10
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
