"""The review store on SQLite and on a real PostgreSQL server: migrations, queue order and keyset
paging, filters, decisions with their audit trail, sellers, export to a training manifest, spool."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.review import queue, sellers
from serving.review.export import export_reviews
from serving.review.records import ItemRecord, PhotoRecord
from serving.review.service import Recorder, save_photo
from serving.review.store import (
    NotFound,
    Reviewer,
    ReviewError,
    ReviewStore,
    make_engine,
    migrate,
    open_store,
)

ANA = Reviewer("ana", "investigator")
T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def _url(kind: str, tmp: Path, postgres: object | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'review.sqlite'}"
    import psycopg

    base = postgres.url  # type: ignore[attr-defined]
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    pg = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    return _url(request.param, tmp_path, pg)


@pytest.fixture
def store(db_url: str) -> Iterator[ReviewStore]:
    s = open_store(db_url)
    yield s
    s.close()


def record(n: int, p: float, **over: object) -> ItemRecord:
    fields: dict[str, object] = {
        "scored_at": T0 + timedelta(hours=n),
        "request_id": f"req-{n}",
        "receipt_id": f"receipt-{n}",
        "item_key": f"item-{n}",
        "verdict": "counterfeit" if p >= 0.6 else "genuine" if p <= 0.4 else "inconclusive",
        "counterfeit_probability": p,
        "model_sha256": "0" * 64,
        "answer": {"n": n},
        "receipt": {"payload": {"receipt_id": f"receipt-{n}"}},
        "brand": "Nike" if n % 2 else "Acme",
        "marketplace": "shop-a",
        "seller_id": f"seller-{n % 3}",
        "photos": [PhotoRecord(0, f"{n:064x}")],
    }
    fields.update(over)
    return ItemRecord(**fields)  # type: ignore[arg-type]


def test_migrations_build_the_declared_schema_from_empty(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from serving.review.models import metadata

    engine = make_engine(db_url)
    assert migrate(engine) == "0001"
    assert migrate(engine) == "0001"  # a second upgrade is a no-op
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "review_alembic_version"})
        assert ctx.get_current_revision() == "0001"
        diff = compare_metadata(ctx, metadata)
    engine.dispose()
    assert diff == [], diff


def test_queue_ranks_by_probability_and_pages_by_keyset(store: ReviewStore) -> None:
    ps = [0.91, 0.2, 0.55, 0.91, 0.99, 0.05, 0.7, 0.91, 0.3, 0.6, 0.8]
    for n, p in enumerate(ps):
        store.add(record(n, p))
    store.add(record(4, 0.99))  # the same receipt again (a spool replay): stored once
    assert store.count() == len(ps)
    seen: list[tuple[float, int]] = []
    cursor = None
    while True:
        rows, cursor = queue.page(store, queue.QueueFilter(), limit=3, cursor=cursor)
        seen += [(r["counterfeit_probability"], r["id"]) for r in rows]
        if cursor is None:
            break
    assert len(seen) == len(ps) and len(set(seen)) == len(ps)
    assert seen == sorted(seen, key=lambda t: (-t[0], -t[1]))  # ties: newest first


def test_filters(store: ReviewStore) -> None:
    for n in range(12):
        reasons = ["reused_photo"] if n % 4 == 0 else ["low_confidence"] if n % 4 == 1 else []
        store.add(record(n, n / 12, reasons=reasons))

    def ids(**kw: object) -> list[int]:
        rows, _ = queue.page(store, queue.QueueFilter(**kw), limit=200)  # type: ignore[arg-type]
        return sorted(r["id"] for r in rows)

    assert len(ids(brand="Nike")) == 6
    assert len(ids(reason="reused_photo")) == 3
    assert len(ids(reason="low_confidence")) == 3
    assert len(ids(seller_id="seller-0")) == 4
    assert len(ids(verdict="counterfeit")) == len([n for n in range(12) if n / 12 >= 0.6])
    assert len(ids(since=T0 + timedelta(hours=10))) == 2
    assert len(ids(until=T0 + timedelta(hours=2))) == 2
    store.decide(1, "unsure", "", reviewer=ANA)
    assert 1 not in ids() and ids(status="decided") == [1] and ids(status="unsure") == [1]
    for bad, what in (
        ({"status": "closed"}, "status"),
        ({"verdict": "fake"}, "verdict"),
        ({"reason": "nope"}, "reason"),
    ):
        with pytest.raises(ReviewError, match=what):
            queue.page(store, queue.QueueFilter(**bad))  # type: ignore[arg-type]
    with pytest.raises(ReviewError, match="cursor"):
        queue.page(store, queue.QueueFilter(), cursor="not-a-cursor")


def test_decisions_keep_every_change(store: ReviewStore) -> None:
    item = store.add(record(0, 0.9))
    store.decide(item, "unsure", "need the tag photo", reviewer=ANA)
    store.decide(item, "confirmed_counterfeit", "serial font wrong", reviewer=Reviewer("bob", "investigator"))
    trail = store.item(item)["decisions"]
    assert [(d["previous_status"], d["status"], d["reviewer"]) for d in trail] == [
        ("open", "unsure", "ana"),
        ("unsure", "confirmed_counterfeit", "bob"),
    ]
    assert trail[1]["previous_note"] == "need the tag photo"
    assert store.item(item)["status"] == "confirmed_counterfeit"
    with pytest.raises(ReviewError, match="confirmed_counterfeit, confirmed_genuine, unsure"):
        store.decide(item, "fake", "", reviewer=ANA)
    with pytest.raises(NotFound):
        store.decide(999, "unsure", "", reviewer=ANA)


def test_sellers_over_time_and_linked_by_shared_photos(store: ReviewStore) -> None:
    shared = "a" * 64
    store.add(record(0, 0.9, seller_id="s1", photos=[PhotoRecord(0, shared)]))
    store.add(record(30, 0.2, seller_id="s1"))
    store.add(record(1, 0.8, seller_id="s2", photos=[PhotoRecord(0, shared)]))
    store.add(record(2, 0.7, seller_id="s3", photos=[PhotoRecord(0, "b" * 64, reference_id=7)]))
    store.add(record(3, 0.7, seller_id="s1", photos=[PhotoRecord(0, "c" * 64, reference_id=7)]))
    store.add(record(4, 0.7, seller_id="s4", photos=[PhotoRecord(0, "d" * 64, reference_seller_id="s1")]))
    store.decide(1, "confirmed_counterfeit", "", reviewer=ANA)
    t = sellers.timeline(store, "s1")
    assert t["totals"] == {"listings": 3, "suspect": 2, "confirmed_counterfeit": 1, "confirmed_genuine": 0}
    assert [p["period"] for p in t["series"]] == ["2026-11-01", "2026-11-02"]
    assert sellers.timeline(store, "s1", bucket="month")["series"][0]["listings"] == 3
    linked = {x["seller_id"]: x["via"] for x in sellers.linked(store, "s1")}
    assert linked == {"s2": ["same_photo"], "s3": ["gallery"]}
    assert sellers.linked(store, "s4") == [{"seller_id": "s1", "shared_photos": 1, "via": ["gallery"]}]
    with pytest.raises(NotFound):
        sellers.timeline(store, "nobody")


def test_export_reviews_is_a_training_manifest(
    store: ReviewStore, tmp_path: Path, sneakers_dir: Path
) -> None:
    from training.data.manifest import load_manifest, load_manifests

    photos_dir = tmp_path / "photos"
    files = sorted(sneakers_dir.glob("*/*.jpg"))[:4]
    hashes = []
    for f in files:
        import hashlib

        data = f.read_bytes()
        h = hashlib.sha256(data).hexdigest()
        save_photo(photos_dir, h, data)
        hashes.append(h)
    for n in range(3):
        store.add(record(n, 0.9, photos=[PhotoRecord(0, hashes[n], format="JPEG", stored=True)]))
    store.add(record(3, 0.9, photos=[PhotoRecord(0, hashes[3], format="JPEG", stored=False)]))
    store.decide(1, "confirmed_counterfeit", "", reviewer=ANA)
    store.decide(2, "confirmed_genuine", "", reviewer=ANA)
    store.decide(3, "unsure", "", reviewer=ANA)  # not a label
    summary = export_reviews(store, photos_dir, tmp_path / "out")
    assert summary.photos == 2 and summary.labels == {"counterfeit": 1, "genuine": 1}
    records = load_manifest(tmp_path / "out" / "manifest.csv")
    assert sorted(r.label for r in records) == ["counterfeit", "genuine"]
    assert {r.extra["source"] for r in records} == {"review"} and all(r.item_id for r in records)
    both = load_manifests(sneakers_dir / "manifest.csv", [tmp_path / "out" / "manifest.csv"])
    assert len(both) == len(load_manifest(sneakers_dir / "manifest.csv")) + 2


def test_a_store_outage_spools_and_the_retry_stores(tmp_path: Path) -> None:
    """SQLite: the database path is unusable (a folder), then fixed; nothing is lost, nothing doubled."""
    blocked = tmp_path / "review.sqlite"
    blocked.mkdir()
    rec = Recorder(f"sqlite:///{blocked}", tmp_path / "photos", tmp_path / "spool.jsonl", retry_s=3600)
    try:
        assert rec.record([record(0, 0.9), record(1, 0.4)], {}) == (0, 2)
        assert rec.pending() == 2
        assert rec.retry() == (0, 2)  # still down: still spooled
        blocked.rmdir()
        assert rec.retry() == (2, 0)
        assert rec.pending() == 0 and rec.store().count() == 2
        assert rec.retry() == (0, 0)
    finally:
        rec.close()


def test_postgres_outage_spools_and_the_retry_stores(postgres: object, tmp_path: Path) -> None:
    url = _url("postgresql", tmp_path, postgres)
    rec = Recorder(url, tmp_path / "photos", tmp_path / "spool.jsonl", retry_s=3600)
    try:
        assert rec.record([record(0, 0.9)], {}) == (1, 0)
        postgres.stop()  # type: ignore[attr-defined]
        try:
            assert rec.record([record(1, 0.8)], {}) == (0, 1)
            assert rec.retry() == (0, 1)
        finally:
            postgres.start()  # type: ignore[attr-defined]
        assert rec.retry() == (1, 0)
        with rec.store().engine.connect() as conn:
            from serving.review.models import items

            assert conn.execute(sa.select(sa.func.count()).select_from(items)).scalar() == 2
    finally:
        rec.close()
