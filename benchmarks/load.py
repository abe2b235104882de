"""Load a running authlens server from this machine and print throughput and latency.

Usage: ``python benchmarks/load.py --url http://127.0.0.1:8000 --size 1600x1200 --batch 8 --concurrency 4 --seconds 15``

Only loopback (or your own test hosts) is a fair target. For the full harness (decoding, model,
and a server it starts itself) use ``authlens bench --bundle DIR``.
"""

from __future__ import annotations

import argparse
import json

from serving.bench import load_run, photo_jpeg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--size", default="1600x1200", help="WIDTHxHEIGHT of the generated JPEG.")
    parser.add_argument(
        "--batch", type=int, default=1, help="1: /v1/score; more: /v1/score/batch with N photos."
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WIDTHxHEIGHT, e.g. 1600x1200; got {args.size!r}")
    headers = {"X-API-Key": args.api_key} if args.api_key else None
    result = load_run(
        args.url,
        photo_jpeg(w, h),
        batch=args.batch,
        concurrency=args.concurrency,
        seconds=args.seconds,
        headers=headers,
    )
    print(json.dumps({"photo": args.size, **result}, indent=2))


if __name__ == "__main__":
    main()
