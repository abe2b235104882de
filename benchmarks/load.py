"""Load an authlens server from this machine and print throughput and latency.

Usage: ``python benchmarks/load.py --url http://127.0.0.1:8000 --size 1600x1200 --concurrency 1,4,16 --seconds 15``

Two modes:

* ``--url``: load a server that is already running.
* ``--bundle DIR``: start ``authlens serve`` on loopback once per ``--variant`` (server settings as
  ``NAME:KEY=VALUE,KEY=VALUE`` with ``AUTHLENS_`` left off, e.g. ``ort1:ORT_THREADS=1``) and run
  every concurrency against each, so variants are compared side by side in one run. Run it under
  the shared CPU lock: ``flock /tmp/authlens-heavy.lock python benchmarks/load.py --bundle ...``.

Each row reports answered requests (200) per second and their latency percentiles, and the
latency of refused ones (429, which must come back at once). Clients retry a refusal at once
unless ``--honour-retry-after``. Only loopback (or your own test hosts) is a fair target. For
decoding and model timings use ``authlens bench --bundle DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from serving.bench import load_run, photo_jpeg, start_server

COLUMNS = ("variant", "clients", "req/s", "p50", "p95", "p99", "429 p50", "429 p99", "statuses")


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition(":")
    env: dict[str, str] = {}
    for pair in filter(None, settings.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--variant {text!r}: settings are KEY=VALUE, got {pair!r}")
        env[f"AUTHLENS_{key.strip().upper()}"] = value.strip()
    return name or "default", env


def _row(variant: str, r: dict[str, Any]) -> str:
    cells = (
        variant, r["concurrency"], r["requests_per_s"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
        r["refused_p50_ms"], r["refused_p99_ms"], r["statuses"],
    )  # fmt: skip
    return " | ".join(str(c) for c in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default=None, help="A running server (default http://127.0.0.1:8000).")
    target.add_argument(
        "--bundle", type=Path, default=None, help="Start a server per variant on this bundle."
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=None,
        help="NAME:KEY=VALUE,... server settings (with --bundle); repeat to compare.",
    )
    parser.add_argument("--size", default="1600x1200", help="WIDTHxHEIGHT of the generated JPEG.")
    parser.add_argument(
        "--batch", type=int, default=1, help="1: /v1/score; more: /v1/score/batch with N photos."
    )
    parser.add_argument("--concurrency", default="4", help="Clients, or a comma-separated list of runs.")
    parser.add_argument("--seconds", type=float, default=15.0, help="Duration of each run.")
    parser.add_argument("--honour-retry-after", action="store_true", help="Clients wait Retry-After on 429.")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--out", type=Path, default=None, help="Also write the rows as JSON.")
    args = parser.parse_args()
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        parser.error(
            f"--size is WIDTHxHEIGHT and --concurrency N[,N...]; got {args.size!r}, {args.concurrency!r}"
        )
    if args.variant and args.bundle is None:
        parser.error("--variant needs --bundle (the script starts a server per variant).")
    photo = photo_jpeg(w, h)
    headers = {"X-API-Key": args.api_key} if args.api_key else None

    def runs(url: str, variant: str) -> list[dict[str, Any]]:
        rows = []
        for n in levels:
            r = load_run(
                url,
                photo,
                batch=args.batch,
                concurrency=n,
                seconds=args.seconds,
                headers=headers,
                honour_retry_after=args.honour_retry_after,
            )
            rows.append({"variant": variant, "photo": args.size, **r})
            print(_row(variant, r), file=sys.stderr, flush=True)
        return rows

    print(" | ".join(COLUMNS), file=sys.stderr)
    results: list[dict[str, Any]] = []
    if args.bundle is None:
        results = runs(args.url or "http://127.0.0.1:8000", "server")
    else:
        for name, env in args.variant or [("default", {})]:
            with tempfile.TemporaryDirectory() as tmp:
                proc, url = start_server(args.bundle, Path(tmp) / "serve.log", env)
                try:
                    results += runs(url, name)
                finally:
                    proc.terminate()
                    proc.wait(60)
    print(json.dumps(results, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
