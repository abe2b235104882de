"""The review store's tables (SQLAlchemy Core). Migrations in ``migrations/versions`` create them;
``tests/serving/test_review_store.py`` checks that the migrated schema equals this metadata.

* ``review_items``: one scored item, its listing metadata, the full answer and its receipt; the
  queue's order is ``counterfeit_probability DESC, id DESC`` and every filter has an index that
  ends in those two columns, so a page is one index range scan (keyset pagination).
* ``review_photos``: the item's photos by SHA-256 (bytes live in the photo folder, by hash), with
  the reference-gallery match each one had: how sellers are linked by shared photos.
* ``review_decisions``: every decision ever made, with what it replaced. Nothing is deleted.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

STATUSES: tuple[str, ...] = ("confirmed_counterfeit", "confirmed_genuine", "unsure")
"""What an investigator may decide."""
OPEN = "open"
"""The status of an item nobody decided yet."""

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY (the rowid); PostgreSQL gets a 64-bit key.
Key = BigInteger().with_variant(Integer(), "sqlite")

items = Table(
    "review_items",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("receipt_id", String(64), nullable=False, unique=True),
    Column("item_key", String(200), nullable=False),
    Column("client_id", String(200)),
    Column("marketplace", String(100)),
    Column("listing_url", String(2000)),
    Column("seller_id", String(200)),
    Column("price", Float),
    Column("currency", String(3)),
    Column("title", String(500)),
    Column("brand", String(100)),
    Column("category", String(100)),
    Column("crawled_at", DateTime(timezone=True)),
    Column("verdict", String(16), nullable=False),
    Column("counterfeit_probability", Float, nullable=False),
    Column("reasons", String(500), nullable=False, default=""),
    Column("flags", String(500), nullable=False, default=""),
    Column("reused", Integer, nullable=False, default=0),
    Column("status", String(32), nullable=False, default=OPEN),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(100)),
    Column("model_sha256", String(64), nullable=False),
    Column("answer", Text, nullable=False),
    Column("receipt", Text, nullable=False),
)

_RANK = (items.c.counterfeit_probability, items.c.id)
Index("ix_review_items_rank", *_RANK)
for _col in ("status", "brand", "category", "marketplace", "verdict", "reused"):
    Index(f"ix_review_items_{_col}_rank", items.c[_col], *_RANK)
Index("ix_review_items_seller_rank", items.c.seller_id, *_RANK)
Index("ix_review_items_scored_at", items.c.scored_at)

photos = Table(
    "review_photos",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("item_id", Key, ForeignKey("review_items.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("client_image_id", String(200)),
    Column("sha256", String(64), nullable=False),
    Column("format", String(8)),
    Column("stored", Integer, nullable=False, default=0),
    Column("reference_id", BigInteger),
    Column("reference_seller_id", String(200)),
)
Index("ix_review_photos_item", photos.c.item_id)
Index("ix_review_photos_sha256", photos.c.sha256)
Index("ix_review_photos_reference", photos.c.reference_id)

decisions = Table(
    "review_decisions",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("item_id", Key, ForeignKey("review_items.id"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("reviewer", String(100), nullable=False),
    Column("role", String(32), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("previous_status", String(32), nullable=False),
    Column("previous_note", Text),
)
Index("ix_review_decisions_item", decisions.c.item_id, decisions.c.id)
