"""The hostile corpus against real servers: every case gets its status and stable error code within
its time bound, and the server's peak RSS while answering it stays bounded.

Cases come from ``tests/hostile/http_cases.py`` (HTTP-level abuse) and ``tests/hostile/images.py``
(files, sent as uploads), all generated at test time. Peak RSS per case is the server process's
high-water mark (``VmHWM``), reset before each case through ``/proc/PID/clear_refs``. Set
``AUTHLENS_RELIABILITY_OUT=path.json`` to write the figures that ``docs/RELIABILITY.md`` quotes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hostile.http_cases import HttpCase, Target, cases, exchange, image_cases, request_head
from serverutil import ADMIN_KEY, API_KEY, Server, copy_bundle, sha, start_server, stop_server

MAX_REQUEST = 4 * 2**20
MAX_FILE = 2 * 2**20
MiB = 2**20
# peak RSS above the RSS before the case, per group (the decoding of an allowed photo dominates)
RSS_BOUND = defaultdict(lambda: 64 * MiB, {"image": 160 * MiB, "json": 96 * MiB, "body": 64 * MiB})
ALL = [*cases(), *image_cases()]
RESULTS: dict[str, dict[str, object]] = {}


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {
        "AUTHLENS_MAX_REQUEST_BYTES": str(MAX_REQUEST),
        "AUTHLENS_MAX_FILE_BYTES": str(MAX_FILE),
        "AUTHLENS_MAX_INFLIGHT_BYTES": str(6 * MiB),
        "AUTHLENS_BODY_IDLE_TIMEOUT_S": "3",
        "AUTHLENS_BODY_GRACE_S": "1",
        "AUTHLENS_BODY_MIN_RATE_BYTES_S": "65536",
        **extra,
    }


@pytest.fixture(scope="module")
def servers(
    tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """A keyless loopback server (the issue's setting) and one with API and admin keys (and a
    32 MiB body limit)."""
    tmp = tmp_path_factory.mktemp("corpus")
    open_ = start_server(copy_bundle(tiny_bundle_dir, tmp / "b1"), tmp / "open.log", env=_env({}))
    keys = {
        "AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]',
        "AUTHLENS_ADMIN_KEY_HASH": sha(ADMIN_KEY),
        "AUTHLENS_MAX_REQUEST_BYTES": str(32 * MiB),  # room for the 21 MB JSON of a million entries
        "AUTHLENS_MAX_INFLIGHT_BYTES": str(64 * MiB),
    }
    try:
        keyed = start_server(copy_bundle(tiny_bundle_dir, tmp / "b2"), tmp / "keyed.log", env=_env(keys))
    except BaseException:
        stop_server(open_)
        raise
    yield open_, keyed
    for s in (open_, keyed):
        stop_server(s)


def _port(s: Server) -> int:
    return int(s.url.rsplit(":", 1)[1])


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak(pid: int) -> int:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    return _status(pid)["VmRSS"]


def test_the_corpus_is_large_and_varied() -> None:
    groups = {c.group.split("-")[0] for c in ALL}
    assert (
        len(ALL) >= 45
        and {"method", "body", "multipart", "json", "auth", "admin", "headers", "image"} <= groups
    )
    image_groups = {c.group for c in ALL if c.group.startswith("image-")}
    assert {"image-bomb", "image-exif", "image-polyglot", "image-mode"} <= image_groups


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_hostile_case(servers: tuple[Server, Server], case: HttpCase) -> None:
    open_, keyed = servers
    target = Target(_port(open_), _port(keyed), API_KEY, ADMIN_KEY, MAX_REQUEST, MAX_FILE)
    pids = [open_.process.pid, keyed.process.pid]
    before = {pid: _reset_peak(pid) for pid in pids}
    answer = case.send(target)
    peak = max(_status(pid)["VmHWM"] - before[pid] for pid in pids)
    RESULTS[case.name] = {
        "group": case.group,
        "status": answer.status,
        "code": answer.code(),
        "seconds": round(answer.seconds, 3),
        "peak_rss_growth_bytes": peak,
    }
    assert answer.status in case.status, (answer.status, answer.body[:300])
    if case.code is not None:
        assert answer.code() == case.code, answer.body[:300]
    if answer.body.startswith(b"{"):
        assert b"Traceback" not in answer.body and json.loads(answer.body)
    assert answer.seconds <= case.max_seconds, answer.seconds
    if case.check is not None:
        case.check(answer)
    bound = RSS_BOUND[case.group.split("-")[0]]
    assert peak <= bound, f"peak RSS grew {peak / MiB:.1f} MiB answering it (bound {bound / MiB:.0f} MiB)"
    for s in servers:
        assert s.process.poll() is None, s.logs()[-2000:]


def test_invented_methods_add_no_metric_series(servers: tuple[Server, Server]) -> None:
    """The issue: 3,000 requests with invented methods left 6,000 series in /metrics."""
    open_, _ = servers

    def series() -> int:
        text = httpx.get(open_.url + "/metrics").text
        return len([line for line in text.splitlines() if line.startswith("authlens_requests_total{")])

    exchange(_port(open_), request_head("ZZZ0", "/v1/score"))
    exchange(_port(open_), request_head("ZZZ0", "/nowhere-0"))
    series()  # the first scrape adds its own series
    start = series()
    for i in range(1, 301):
        exchange(_port(open_), request_head(f"ZZZ{i}", "/v1/score" if i % 2 else f"/nowhere-{i}"))
    assert series() == start
    labels = set(re.findall(r'method="([^"]+)"', httpx.get(open_.url + "/metrics").text))
    assert labels <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}, labels


def test_the_servers_still_serve_and_hold_nothing(servers: tuple[Server, Server]) -> None:
    open_, keyed = servers
    from factories import jpeg_bytes

    photo = [("files", ("p.jpg", jpeg_bytes(320, 240)))]
    with open_.client(key=None) as c:
        assert c.post("/v1/score", files=photo).status_code == 200
        deadline = time.monotonic() + 10
        while "authlens_queue_depth 0.0" not in c.get("/metrics").text:  # nothing left admitted
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with keyed.client() as c:
        assert c.post("/v1/score", files=photo).status_code == 200
    for s in servers:
        assert "Traceback" not in s.logs() or "unhandled_error" not in s.logs()
    if RESULTS:
        _report()


def _report() -> None:
    by_group: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in RESULTS.values():
        by_group[str(r["group"]).split("-")[0]].append(r)
        if str(r["group"]).startswith("image-"):
            by_group[str(r["group"])].append(r)
    summary = {
        "cases": len(RESULTS),
        "groups": {
            g: {
                "cases": len(rs),
                "max_peak_rss_growth_mib": round(max(int(r["peak_rss_growth_bytes"]) for r in rs) / MiB, 1),  # type: ignore[call-overload]
                "max_seconds": max(float(r["seconds"]) for r in rs),  # type: ignore[arg-type]
            }
            for g, rs in sorted(by_group.items())
        },
        "cases_detail": RESULTS,
    }
    out = os.environ.get("AUTHLENS_RELIABILITY_OUT")
    if out:
        Path(out).write_text(json.dumps(summary, indent=2) + "\n")
