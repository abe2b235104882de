"""The machine a benchmark ran on, and whether anything else used its CPU meanwhile.

:class:`CpuMonitor` samples, once a second, the machine's busy CPU time (``/proc/stat``) and
the CPU time of this process and all its descendants (servers, load generator, training
workers: psutil). The difference is what *other* processes used: on a quiet machine it is near
zero. Each section of the harness records its own share, and the processes that used the most
are named, so a distorted run says so in its JSON and in the table.
"""

from __future__ import annotations

import os
import platform
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil

QUIET_SHARE = 0.05
"""Other processes may use at most this share of the machine's CPU (on average over a section)
for the run to count as quiet."""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def describe_machine(label: str | None = None) -> dict[str, Any]:
    """CPU model, cores (and those this process may use), memory, OS and library versions."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    freq = psutil.cpu_freq()
    return {
        "label": label or socket.gethostname(),
        "hostname": socket.gethostname(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": affinity,
        "cpu_mhz_max": round(freq.max) if freq and freq.max else None,
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": {
            name: _version(name)
            for name in (
                "onnxruntime",
                "torch",
                "timm",
                "pillow",
                "pillow-heif",
                "numpy",
                "fastapi",
                "uvicorn",
            )
        },
    }


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _tree_seconds(root: psutil.Process) -> float:
    """CPU seconds of ``root`` and its descendants, reaped children included."""
    total = 0.0
    procs = [root]
    with suppress(psutil.Error):
        procs += root.children(recursive=True)
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _process_times(exclude: set[int]) -> dict[int, tuple[float, str, int]]:
    out = {}
    for p in psutil.process_iter(["pid", "name", "cmdline", "cpu_times", "nice"]):
        info = p.info
        if info["pid"] in exclude or info["cpu_times"] is None:
            continue
        t = info["cpu_times"]
        cmd = " ".join(info["cmdline"] or [info["name"] or "?"])
        out[info["pid"]] = (t.user + t.system, cmd[:120], info["nice"] or 0)
    return out


class CpuMonitor:
    """Measures the CPU other processes use while the harness runs (see the module docstring).

    Args:
        interval_s: Seconds between samples.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.cores = os.cpu_count() or 1
        self.me = psutil.Process()
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, machine busy s, ours s)
        self.sections: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_procs: dict[int, tuple[float, str, int]] = {}
        self._loadavg_start: tuple[float, ...] = ()

    def _sample(self) -> None:
        self.samples.append((time.monotonic(), _busy_seconds(), _tree_seconds(self.me)))

    def _ours(self) -> set[int]:
        try:
            return {self.me.pid, *(p.pid for p in self.me.children(recursive=True))}
        except psutil.Error:
            return {self.me.pid}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        self._loadavg_start = os.getloadavg()
        self._start_procs = _process_times(self._ours())
        self._sample()
        self._thread = threading.Thread(target=self._run, name="cpu-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Record the time span of a section of the run."""
        self._sample()
        start = time.monotonic()
        try:
            yield
        finally:
            self._sample()
            self.sections[name] = (start, time.monotonic())

    def _others(self, start: float, end: float) -> float | None:
        """Mean cores used by other processes between ``start`` and ``end`` (monotonic)."""
        inside = [s for s in self.samples if start - 1e-6 <= s[0] <= end + 1e-6]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return None
        (t0, busy0, ours0), (t1, busy1, ours1) = inside[0], inside[-1]
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (t1 - t0)

    def report(self) -> dict[str, Any]:
        """Whether the run was quiet: other processes' mean cores, overall and per section, the
        load average at start and end, and the processes that used the most."""
        start, end = self.samples[0][0], self.samples[-1][0]
        overall = self._others(start, end) or 0.0
        by_section = {name: self._others(a, b) for name, (a, b) in self.sections.items()}
        wall = max(end - start, 1e-9)
        ours = self._ours()
        top: list[dict[str, Any]] = []
        for pid, (cpu, cmd, nice) in _process_times(ours).items():
            before = self._start_procs.get(pid, (0.0, cmd, nice))[0]
            cores = (cpu - before) / wall
            if cores >= 0.02:
                top.append({"pid": pid, "cores": round(cores, 2), "nice": nice, "command": cmd})
        top.sort(key=lambda r: -r["cores"])
        worst = max([v for v in by_section.values() if v is not None] + [overall])
        quiet = worst <= QUIET_SHARE * self.cores
        return {
            "quiet": quiet,
            "other_cores_mean": round(overall, 2),
            "other_share": round(overall / self.cores, 3),
            "other_cores_worst_section": round(worst, 2),
            "by_section": {k: None if v is None else round(v, 2) for k, v in by_section.items()},
            "loadavg_start": [round(v, 2) for v in self._loadavg_start],
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
            "top_other_processes": top[:5],
            "rule": f"quiet when other processes used at most {QUIET_SHARE:.0%} of the {self.cores} cores "
            "in every section (machine busy time from /proc/stat minus this process tree's, psutil)",
        }
