"""The review store: items, photos, decisions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RANK = ("counterfeit_probability", "id")


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("receipt_id", sa.String(64), nullable=False, unique=True),
        sa.Column("item_key", sa.String(200), nullable=False),
        sa.Column("client_id", sa.String(200)),
        sa.Column("marketplace", sa.String(100)),
        sa.Column("listing_url", sa.String(2000)),
        sa.Column("seller_id", sa.String(200)),
        sa.Column("price", sa.Float),
        sa.Column("currency", sa.String(3)),
        sa.Column("title", sa.String(500)),
        sa.Column("brand", sa.String(100)),
        sa.Column("category", sa.String(100)),
        sa.Column("crawled_at", sa.DateTime(timezone=True)),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("counterfeit_probability", sa.Float, nullable=False),
        sa.Column("reasons", sa.String(500), nullable=False),
        sa.Column("flags", sa.String(500), nullable=False),
        sa.Column("reused", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.String(100)),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("receipt", sa.Text, nullable=False),
    )
    op.create_index("ix_review_items_rank", "review_items", list(RANK))
    for col in ("status", "brand", "category", "marketplace", "verdict", "reused"):
        op.create_index(f"ix_review_items_{col}_rank", "review_items", [col, *RANK])
    op.create_index("ix_review_items_seller_rank", "review_items", ["seller_id", *RANK])
    op.create_index("ix_review_items_scored_at", "review_items", ["scored_at"])
    op.create_table(
        "review_photos",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("item_id", Key, sa.ForeignKey("review_items.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("client_image_id", sa.String(200)),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(8)),
        sa.Column("stored", sa.Integer, nullable=False),
        sa.Column("reference_id", sa.BigInteger),
        sa.Column("reference_seller_id", sa.String(200)),
    )
    op.create_index("ix_review_photos_item", "review_photos", ["item_id"])
    op.create_index("ix_review_photos_sha256", "review_photos", ["sha256"])
    op.create_index("ix_review_photos_reference", "review_photos", ["reference_id"])
    op.create_table(
        "review_decisions",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("item_id", Key, sa.ForeignKey("review_items.id"), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_status", sa.String(32), nullable=False),
        sa.Column("previous_note", sa.Text),
    )
    op.create_index("ix_review_decisions_item", "review_decisions", ["item_id", "id"])


def downgrade() -> None:
    raise NotImplementedError("The review store is never downgraded: nothing recorded is dropped.")
