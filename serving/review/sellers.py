"""Sellers: suspect and confirmed listings over time, and the sellers a storefront shares photos with.

Two sellers are linked when a photo of one is a photo of the other: the same bytes (SHA-256), the
same reference-gallery photo matched (a reused photo, re-encoded or cropped), or a gallery match
that names the other seller's listing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from serving.review.models import items, photos
from serving.review.records import utc
from serving.review.store import NotFound, ReviewError, ReviewStore

BUCKETS = ("day", "week", "month")
MAX_LINKED = 100


def _period(when: datetime, bucket: str) -> str:
    if bucket == "day":
        return when.strftime("%Y-%m-%d")
    if bucket == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    return when.strftime("%Y-%m")


def timeline(store: ReviewStore, seller_id: str, *, bucket: str = "day") -> dict[str, Any]:
    """Per period: listings scored, suspect (verdict counterfeit), confirmed counterfeit and genuine.

    Raises:
        ReviewError: unknown ``bucket``. NotFound: no item of this seller.
    """
    if bucket not in BUCKETS:
        raise ReviewError(f"bucket {bucket!r} is not one of {', '.join(BUCKETS)}.")
    q = sa.select(items.c.scored_at, items.c.verdict, items.c.status).where(items.c.seller_id == seller_id)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    if not rows:
        raise NotFound(f"No scored listing of seller {seller_id!r}.")
    series: dict[str, dict[str, int]] = defaultdict(
        lambda: {"listings": 0, "suspect": 0, "confirmed_counterfeit": 0, "confirmed_genuine": 0}
    )
    for r in rows:
        s = series[_period(utc(r.scored_at), bucket)]  # type: ignore[arg-type]
        s["listings"] += 1
        s["suspect"] += r.verdict == "counterfeit"
        if r.status in ("confirmed_counterfeit", "confirmed_genuine"):
            s[r.status] += 1
    ordered: list[dict[str, Any]] = [{"period": k, **v} for k, v in sorted(series.items())]
    totals = {
        k: sum(p[k] for p in ordered)
        for k in ("listings", "suspect", "confirmed_counterfeit", "confirmed_genuine")
    }
    return {"seller_id": seller_id, "bucket": bucket, "totals": totals, "series": ordered}


def linked(store: ReviewStore, seller_id: str) -> list[dict[str, Any]]:
    """Sellers sharing photos with ``seller_id``, most shared photos first."""
    mine = (
        sa.select(photos.c.sha256, photos.c.reference_id, photos.c.reference_seller_id)
        .join(items, items.c.id == photos.c.item_id)
        .where(items.c.seller_id == seller_id)
    )
    with store.engine.connect() as conn:
        own = conn.execute(mine).all()
        hashes = sorted({r.sha256 for r in own})
        refs = sorted({r.reference_id for r in own if r.reference_id is not None})
        shared: dict[str, set[str]] = defaultdict(set)
        how: dict[str, set[str]] = defaultdict(set)
        for r in own:
            if r.reference_seller_id and r.reference_seller_id != seller_id:
                shared[r.reference_seller_id].add(r.sha256)
                how[r.reference_seller_id].add("gallery")
        conds = []
        if hashes:
            conds.append(photos.c.sha256.in_(hashes[:5000]))
        if refs:
            conds.append(photos.c.reference_id.in_(refs[:5000]))
        if conds:
            q = (
                sa.select(items.c.seller_id, photos.c.sha256, photos.c.reference_id)
                .join(items, items.c.id == photos.c.item_id)
                .where(sa.or_(*conds), items.c.seller_id.is_not(None), items.c.seller_id != seller_id)
            )
            for r in conn.execute(q):
                key = r.reference_id if r.reference_id in refs else None
                shared[r.seller_id].add(r.sha256 if key is None else f"ref:{key}")
                how[r.seller_id].add("same_photo" if r.sha256 in hashes else "gallery")
    ranked = sorted(shared.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [{"seller_id": s, "shared_photos": len(v), "via": sorted(how[s])} for s, v in ranked[:MAX_LINKED]]
