"""Sections 4 and 5 of ``make bench``: end to end over HTTP on loopback, cold start and memory.

Two servers, one after the other, each a single process using every core: ``authlens serve``
with its defaults, and the naive baseline (``benchmarks/baseline_server.py``). Against each, the
load generator of ``serving.bench`` (a child process pinned to one core, raw keep-alive HTTP/1.1
with the request built once, its own CPU time reported) runs:

* closed-loop sweeps of one photo per request to ``/v1/score`` at each concurrency, for the
  small (1600x1200) and large (4000x3000) JPEG;
* an open loop at half of the best small-photo throughput: latency at a load with headroom
  (the target compares its p99 with its p50);
* ``/v1/score/batch`` with 64 small photos per call (the baseline loops over them).

Cold start is process start to the first 200 from ``/readyz`` (file cache warm: the figure of a
restart, not of a first boot); memory is the server's resident set when ready and its peak
(``VmHWM``) after all of its runs.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from serving.bench import (
    Launched,
    free_port,
    launch,
    load_run,
    proc_memory,
    reset_peak_rss,
    serve_command,
    serve_env,
)

ROOT = Path(__file__).resolve().parents[1]
Progress = Callable[[str], None]


def baseline_command(bundle: Path, port: int, weights: Path | None) -> list[str]:
    """The naive baseline server on loopback at ``port``."""
    cmd = [sys.executable, "-m", "benchmarks.baseline_server", "--bundle", str(bundle), "--port", str(port)]
    return [*cmd, "--weights", str(weights)] if weights is not None else cmd


def start(server: str, bundle: Path, weights: Path | None, log: Path) -> Launched:
    """Start ``server`` (``authlens`` or ``baseline``) and wait until it is ready."""
    port = free_port()
    if server == "authlens":
        return launch(serve_command(bundle, port), port, log, env=serve_env(), cwd=ROOT)
    return launch(baseline_command(bundle, port, weights), port, log, env=serve_env(), cwd=ROOT)


def _runs(
    server: Launched,
    photos: dict[str, bytes],
    *,
    levels: Sequence[int],
    seconds: float,
    warmup_s: float,
    batch_images: int,
    batch_s: float,
    half_load_s: float,
    progress: Progress,
) -> list[dict[str, Any]]:
    pid = server.process.pid

    def measured(**kwargs: Any) -> dict[str, Any]:
        """One load run, with the server's resident memory after it and its peak during it."""
        reset = reset_peak_rss(pid)
        r = load_run(server.url, **kwargs)
        mem = proc_memory(pid)
        return {
            **r,
            "server_rss_mb": mem["rss_mb"],
            "server_peak_rss_mb": mem["peak_rss_mb"] if reset else None,
        }

    names = list(photos)
    small = names[0]
    drain = max(5.0, 3 * seconds)  # bounds a run against a server far slower than its clients
    rows: list[dict[str, Any]] = []
    for name in names:
        for c in levels:
            progress(f"{name}, {c} client{'s' if c > 1 else ''}, {seconds:g} s")
            r = measured(
                photo=photos[name],
                batch=1,
                concurrency=c,
                seconds=seconds,
                warmup_s=warmup_s,
                drain_s=drain,
            )
            rows.append({"photo": name, "mode": "closed", **r})
    best = max((r["images_per_s"] for r in rows if r["photo"] == small), default=0.0)
    alone = next(
        (r for r in rows if r["photo"] == small and r["concurrency"] == 1 and r["requests_ok"]), None
    )
    if not best and alone is not None:  # nothing finished inside a short window: one client's pace
        best = 1000 / max(alone["p50_ms"], 1.0)
    if half_load_s > 0 and best > 0:
        rate = round(best / 2, 2)
        progress(f"{small}, open loop at {rate:g}/s (half of the best), {half_load_s:g} s")
        r = measured(
            photo=photos[small],
            batch=1,
            concurrency=0,
            seconds=half_load_s,
            rate=rate,
            warmup_s=warmup_s,
            drain_s=drain,
        )
        rows.append({"photo": small, "mode": "half_load", **r})
    if batch_images > 1 and batch_s > 0:
        progress(f"{small}, /v1/score/batch with {batch_images} photos, 1 client, {batch_s:g} s")
        r = measured(
            photo=[photos[small]] * batch_images,
            batch=batch_images,
            concurrency=1,
            seconds=batch_s,
            warmup_s=warmup_s,
            drain_s=max(drain, 3 * batch_s),
        )
        rows.append({"photo": small, "mode": "batch", **r})
    return rows


def _describe(row: dict[str, Any]) -> str:
    """A load run in words: ``4000x3000, 64 clients``."""
    if row["mode"] == "batch":
        return f"{row['photo']}, batch of {row['batch']}"
    if row["mode"] == "half_load":
        return f"{row['photo']}, open loop at {row['rate_per_s']}/s"
    return f"{row['photo']}, {row['concurrency']} clients"


def http_section(
    bundle: Path,
    weights: Path | None,
    photos: dict[str, bytes],
    *,
    levels: Sequence[int],
    seconds: float,
    warmup_s: float,
    batch_images: int,
    batch_s: float,
    half_load_s: float,
    cold_start_extra: int,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sections 4 and 5: load runs and cold start / memory for both servers.

    Args:
        photos: JPEGs by name, small first (``/v1/score/batch`` and the half-load run use it).
        cold_start_extra: Starts timed besides the one before the load runs.
    """
    runs: dict[str, Any] = {}
    cold: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="authlens-bench-http-") as tmp:
        for name in ("authlens", "baseline"):
            progress(f"{name}: starting")
            server = start(name, bundle, weights, Path(tmp) / f"{name}.log")
            starts = [server.ready_s]
            try:
                ready = proc_memory(server.process.pid)
                rows = _runs(
                    server,
                    photos,
                    levels=levels,
                    seconds=seconds,
                    warmup_s=warmup_s,
                    batch_images=batch_images,
                    batch_s=batch_s,
                    half_load_s=half_load_s,
                    progress=lambda text, name=name: progress(f"{name}: {text}"),  # type: ignore[misc]
                )
                peaks = [ready["peak_rss_mb"], *(r["server_peak_rss_mb"] or 0.0 for r in rows)]
                worst = max(rows, key=lambda r: r["server_peak_rss_mb"] or 0.0, default=None)
                after = proc_memory(server.process.pid)
            finally:
                server.stop()
            for _ in range(cold_start_extra):
                again = start(name, bundle, weights, Path(tmp) / f"{name}.cold.log")
                starts.append(again.ready_s)
                again.stop()
            runs[name] = rows
            cold[name] = {
                "cold_start_s": round(statistics.median(starts), 2),
                "cold_start_samples_s": [round(s, 2) for s in starts],
                "rss_ready_mb": ready["rss_mb"],
                "rss_after_runs_mb": after["rss_mb"],
                "peak_rss_mb": max(*peaks, after["peak_rss_mb"]),
                "peak_rss_run": _describe(worst) if worst else None,
            }
    return {"levels": list(levels), "servers": runs}, cold
