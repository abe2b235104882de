"""Alembic environment of the review store; run through :func:`serving.review.store.migrate`,
which hands over an open connection (``config.attributes["connection"]``)."""

from __future__ import annotations

from alembic import context

from serving.review.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Run review migrations through serving.review.store.migrate (or `authlens review migrate`)."
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="review_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
