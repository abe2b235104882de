"""Review queue paging at scale: bulk-insert synthetic items into a SQLite review store, then time
pages of the queue deep inside it, with keyset pagination (what the API does) and, for contrast,
with OFFSET.

Usage::

    python benchmarks/bench_review.py --rows 1000000 --db /tmp/review-bench.sqlite [--out results.json]

The store is built once (``--db`` is reused when it already holds ``--rows`` items). Each figure is
the median of ``--repeat`` runs of one page (50 items) at the given depth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.review import queue
from serving.review.models import items
from serving.review.store import ReviewStore, open_store

BRANDS = [f"brand-{i}" for i in range(20)]
MARKETPLACES = [f"shop-{i}" for i in range(10)]
CATEGORIES = ["sneakers", "bags", "wallets", "belts", "watches"]


def fill(store: ReviewStore, rows: int, *, seed: int = 0, chunk: int = 50_000) -> float:
    """Insert ``rows`` synthetic items (no photos); seconds taken."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    done = store.count()
    while done < rows:
        n = min(chunk, rows - done)
        p = rng.beta(0.6, 2.0, n).round(6)
        brand = rng.integers(0, len(BRANDS), n)
        market = rng.integers(0, len(MARKETPLACES), n)
        cat = rng.integers(0, len(CATEGORIES), n)
        seller = rng.integers(0, 50_000, n)
        reused = rng.random(n) < 0.05
        batch = [
            {
                "scored_at": start + timedelta(seconds=int(done + k) * 30),
                "request_id": "bench",
                "receipt_id": f"r{done + k}",
                "item_key": f"item-{done + k}",
                "marketplace": MARKETPLACES[market[k]],
                "seller_id": f"seller-{seller[k]}",
                "brand": BRANDS[brand[k]],
                "category": CATEGORIES[cat[k]],
                "verdict": "counterfeit" if p[k] >= 0.6 else "genuine" if p[k] <= 0.4 else "inconclusive",
                "counterfeit_probability": float(p[k]),
                "reasons": ";reused_photo;" if reused[k] else "",
                "flags": "",
                "reused": int(reused[k]),
                "status": "open",
                "model_sha256": "0" * 64,
                "answer": "{}",
                "receipt": "{}",
            }
            for k in range(n)
        ]
        with store.engine.begin() as conn:
            conn.execute(items.insert(), batch)
        done += n
        print(f"  {done:,} rows ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    with store.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    return time.perf_counter() - t0


def _median_ms(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm the page cache for this range once
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def cursor_at(store: ReviewStore, flt: queue.QueueFilter, depth: int) -> str | None:
    """The keyset cursor after ``depth`` rows of this filter (found once, not timed)."""
    if depth == 0:
        return None
    c = items.c
    q = (
        sa.select(c.counterfeit_probability, c.id)
        .where(*flt.where())
        .order_by(c.counterfeit_probability.desc(), c.id.desc())
        .offset(depth - 1)
        .limit(1)
    )
    with store.engine.connect() as conn:
        row = conn.execute(q).first()
    return None if row is None else queue.encode_cursor(row[0], row[1])


def offset_page(store: ReviewStore, flt: queue.QueueFilter, depth: int, limit: int) -> int:
    c = items.c
    q = (
        sa.select(*queue.LIST_COLUMNS)
        .where(*flt.where())
        .order_by(c.counterfeit_probability.desc(), c.id.desc())
        .offset(depth)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return len(conn.execute(q).all())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/authlens-review-bench.sqlite"))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    store = open_store(f"sqlite:///{args.db}")
    fill_s = fill(store, args.rows) if store.count() < args.rows else None
    total = store.count()
    filters = {
        "open (default)": queue.QueueFilter(),
        "brand": queue.QueueFilter(brand="brand-3"),
        "reason=reused_photo": queue.QueueFilter(reason="reused_photo"),
        "marketplace+brand": queue.QueueFilter(marketplace="shop-2", brand="brand-3"),
        "seller": queue.QueueFilter(seller_id="seller-123"),
    }
    results = []
    for name, flt in filters.items():
        for depth in (0, 1_000, 100_000, 500_000):
            cur = cursor_at(store, flt, depth)
            if depth and cur is None:
                continue
            keyset = _median_ms(partial(queue.page, store, flt, limit=args.limit, cursor=cur), args.repeat)
            offset = _median_ms(partial(offset_page, store, flt, depth, args.limit), max(3, args.repeat // 5))
            results.append({"filter": name, "depth": depth, "keyset_ms": keyset, "offset_ms": offset})
            print(f"{name:22s} depth {depth:>9,}: keyset {keyset:8.2f} ms   offset {offset:9.2f} ms")
    out = {
        "rows": total,
        "fill_seconds": None if fill_s is None else round(fill_s, 1),
        "db_bytes": args.db.stat().st_size,
        "page_size": args.limit,
        "results": results,
    }
    print(json.dumps(out, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
