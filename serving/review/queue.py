"""The queue: items ranked by calibrated counterfeit probability, most suspect first, with filters
and keyset pagination.

A page is ``ORDER BY counterfeit_probability DESC, id DESC LIMIT n`` after the last row of the
previous page (``(p, id) < (p_last, id_last)``), never ``OFFSET``: the database walks one index
(``ix_review_items_<filter>_rank``) from where the last page ended, so page 10,000 costs what page 1
does. Measured in ``benchmarks/bench_review.py`` (``docs/review.md``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from model.decision import REASONS
from serving.review.models import OPEN, STATUSES, items
from serving.review.records import joined, split_joined, utc
from serving.review.store import ReviewError, ReviewStore

QUEUE_STATUSES: tuple[str, ...] = (OPEN, "decided", "any", *STATUSES)
VERDICTS: tuple[str, ...] = ("genuine", "counterfeit", "inconclusive")
MAX_PAGE = 200


LIST_COLUMNS = (
    items.c.id,
    items.c.scored_at,
    items.c.item_key,
    items.c.marketplace,
    items.c.listing_url,
    items.c.seller_id,
    items.c.title,
    items.c.brand,
    items.c.category,
    items.c.price,
    items.c.currency,
    items.c.verdict,
    items.c.counterfeit_probability,
    items.c.reasons,
    items.c.flags,
    items.c.status,
    items.c.decided_by,
)


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows; ``None`` fields do not filter."""

    status: str = OPEN
    brand: str | None = None
    category: str | None = None
    marketplace: str | None = None
    seller_id: str | None = None
    verdict: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def check(self) -> None:
        """Raises :class:`ReviewError` naming the bad filter and what is allowed."""
        if self.status not in QUEUE_STATUSES:
            raise ReviewError(f"status {self.status!r} is not one of {', '.join(QUEUE_STATUSES)}.")
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ReviewError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}.")
        if self.reason is not None and self.reason not in REASONS:
            raise ReviewError(f"reason {self.reason!r} is not one of {', '.join(REASONS)}.")
        if self.since and self.until and self.since > self.until:
            raise ReviewError("since is after until.")

    def where(self) -> list[Any]:
        """SQL conditions for these filters."""
        c = items.c
        out: list[Any] = []
        if self.status == "decided":
            out.append(c.status != OPEN)
        elif self.status != "any":
            out.append(c.status == self.status)
        for col, value in (
            (c.brand, self.brand),
            (c.category, self.category),
            (c.marketplace, self.marketplace),
            (c.seller_id, self.seller_id),
            (c.verdict, self.verdict),
        ):
            if value is not None:
                out.append(col == value)
        if self.reason == "reused_photo":
            out.append(c.reused == 1)  # indexed: the reason investigators filter on most
        elif self.reason is not None:
            out.append(c.reasons.like(f"%{joined([self.reason])}%"))
        if self.since is not None:
            out.append(c.scored_at >= self.since)
        if self.until is not None:
            out.append(c.scored_at < self.until)
        return out


def encode_cursor(p: float, item_id: int) -> str:
    """Opaque cursor of the row a page ended on."""
    return base64.urlsafe_b64encode(json.dumps([p, item_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """Raises :class:`ReviewError` for a cursor this server did not make."""
    try:
        p, item_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(p, int | float) or isinstance(item_id, bool) or not isinstance(item_id, int):
            raise ValueError
        return float(p), item_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ReviewError("cursor is not one this server returned (pass next_cursor as it came).") from None


def page(
    store: ReviewStore, flt: QueueFilter, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the queue and the cursor of the next (``None`` on the last page)."""
    flt.check()
    if not 1 <= limit <= MAX_PAGE:
        raise ReviewError(f"limit {limit} is outside 1..{MAX_PAGE}.")
    c = items.c
    q = sa.select(*LIST_COLUMNS).where(*flt.where())
    if cursor is not None:
        p, last = decode_cursor(cursor)
        q = q.where(sa.tuple_(c.counterfeit_probability, c.id) < sa.tuple_(sa.literal(p), sa.literal(last)))
    q = q.order_by(c.counterfeit_probability.desc(), c.id.desc()).limit(limit + 1)
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    out = []
    for r in rows[:limit]:
        d = dict(r._mapping)
        d["scored_at"] = utc(d["scored_at"])
        d["reasons"] = split_joined(d["reasons"])
        d["flags"] = split_joined(d["flags"])
        out.append(d)
    nxt = None
    if len(rows) > limit:
        last_row = out[-1]
        nxt = encode_cursor(last_row["counterfeit_probability"], last_row["id"])
    return out, nxt
