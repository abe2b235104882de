"""The review store: SQLite by default (a file, nothing to start), PostgreSQL by URL.

Schema changes are Alembic migrations (``migrations/versions``); :func:`open_store` brings a
database up to date before using it. Writes are single transactions; nothing is ever deleted.

Usage::

    store = open_store("sqlite:///bundles/review.sqlite")      # or postgresql+psycopg://...
    item_id = store.add(record)
    store.decide(item_id, "confirmed_counterfeit", "serial font wrong", reviewer=Reviewer("ana", "investigator"))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from serving.review.models import OPEN, STATUSES, decisions, items, metadata, photos
from serving.review.records import ItemRecord, split_joined, utc

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class ReviewError(Exception):
    """A request the store cannot satisfy; ``code`` is the API's error code."""

    code = "invalid_request"
    status = 422


class NotFound(ReviewError):
    code = "not_found"
    status = 404


@dataclass(frozen=True)
class Reviewer:
    """An investigator, as their API key identifies them."""

    name: str
    role: str


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi: Any, _record: Any) -> None:
            cur = dbapi.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith(("postgresql", "postgres")):
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    raise ReviewError(f"review_db_url {url.split(':')[0]!r}: use sqlite:///PATH or postgresql+psycopg://...")


def migrate(engine: Engine) -> str:
    """Upgrade the database to the newest revision; return it."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin otherwise
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    head = ScriptDirectory.from_config(cfg).get_current_head()
    return str(head)


def open_store(url: str, *, upgrade: bool = True) -> ReviewStore:
    """Open (and by default migrate) the review store at ``url``."""
    engine = make_engine(url)
    if upgrade:
        migrate(engine)
    return ReviewStore(engine)


def _item_dict(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    for key in ("scored_at", "crawled_at", "decided_at"):
        if key in d:
            d[key] = utc(d[key])
    for key in ("reasons", "flags"):
        if key in d:
            d[key] = split_joined(d[key])
    for key in ("answer", "receipt"):
        if key in d and isinstance(d[key], str):
            d[key] = json.loads(d[key])
    if "reused" in d:
        d["reused"] = bool(d["reused"])
    return d


class ReviewStore:
    """Items, photos and decisions in one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def add(self, record: ItemRecord) -> int:
        """Store a scored item and its photos; a record already stored (same receipt) is not
        stored twice, so replaying the spool is safe. Returns the item's id."""
        try:
            with self.engine.begin() as conn:
                key = conn.execute(items.insert().values(**record.columns())).inserted_primary_key
                item_id = int(key[0])  # type: ignore[index]
                if record.photos:
                    conn.execute(
                        photos.insert(),
                        [
                            {
                                "item_id": item_id,
                                "position": p.position,
                                "client_image_id": p.client_image_id,
                                "sha256": p.sha256,
                                "format": p.format,
                                "stored": int(p.stored),
                                "reference_id": p.reference_id,
                                "reference_seller_id": p.reference_seller_id,
                            }
                            for p in record.photos
                        ],
                    )
                return item_id
        except IntegrityError:
            with self.engine.connect() as conn:
                found = conn.execute(
                    sa.select(items.c.id).where(items.c.receipt_id == record.receipt_id)
                ).scalar()
            if found is None:
                raise
            return int(found)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(items)).scalar() or 0)

    def item(self, item_id: int) -> dict[str, Any]:
        """The item with its photos and decisions (oldest first).

        Raises:
            NotFound: no such item.
        """
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(items).where(items.c.id == item_id)).first()
            if row is None:
                raise NotFound(f"No review item {item_id}.")
            out = _item_dict(row)
            out["photos"] = [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(photos).where(photos.c.item_id == item_id).order_by(photos.c.position)
                )
            ]
            out["decisions"] = self._history(conn, item_id)
        return out

    @staticmethod
    def _history(conn: Connection, item_id: int) -> list[dict[str, Any]]:
        rows = conn.execute(
            sa.select(decisions).where(decisions.c.item_id == item_id).order_by(decisions.c.id)
        )
        return [{**dict(r._mapping), "decided_at": utc(r.decided_at)} for r in rows]

    def history(self, item_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return self._history(conn, item_id)

    def decide(self, item_id: int, status: str, note: str, *, reviewer: Reviewer) -> dict[str, Any]:
        """Record a decision on an item; the item's previous status and note are kept with it.

        Raises:
            ReviewError: ``status`` is not one of :data:`STATUSES`.
            NotFound: no such item.
        """
        if status not in STATUSES:
            raise ReviewError(f"status {status!r} is not one of {', '.join(STATUSES)}.")
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            cur = conn.execute(
                sa.select(items.c.status).where(items.c.id == item_id).with_for_update()
            ).first()
            if cur is None:
                raise NotFound(f"No review item {item_id}.")
            last = conn.execute(
                sa.select(decisions.c.note)
                .where(decisions.c.item_id == item_id)
                .order_by(decisions.c.id.desc())
                .limit(1)
            ).first()
            row = {
                "item_id": item_id,
                "status": status,
                "note": note,
                "reviewer": reviewer.name,
                "role": reviewer.role,
                "decided_at": now,
                "previous_status": cur.status,
                "previous_note": last.note if last is not None else None,
            }
            decision_id = conn.execute(decisions.insert().values(**row)).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                items.update()
                .where(items.c.id == item_id)
                .values(status=status, decided_at=now, decided_by=reviewer.name)
            )
        return {"id": int(decision_id), **row}

    def decided(
        self, statuses: tuple[str, ...] = ("confirmed_counterfeit", "confirmed_genuine")
    ) -> list[dict[str, Any]]:
        """Items whose current status is one of ``statuses``, with their photos (for export)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(items).where(items.c.status.in_(statuses)).order_by(items.c.id)
            ).all()
            out = [_item_dict(r) for r in rows]
            ids = [d["id"] for d in out]
            by_item: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
            for chunk in range(0, len(ids), 500):
                for r in conn.execute(
                    sa.select(photos)
                    .where(photos.c.item_id.in_(ids[chunk : chunk + 500]))
                    .order_by(photos.c.position)
                ):
                    by_item[r.item_id].append(dict(r._mapping))
        for d in out:
            d["photos"] = by_item[d["id"]]
        return out


__all__ = ["OPEN", "STATUSES", "NotFound", "ReviewError", "ReviewStore", "Reviewer", "metadata", "open_store"]
