"""The review queue on PostgreSQL behind a real server: batches land, and while the database is
down the answers are still given, spooled, and stored once it is back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
from reviewutil import batch_body, post_batch, reviewer, start_review_server
from serverutil import stop_server


def test_postgres_queue_and_outage(
    postgres, tiny_bundle_dir: Path, sneakers_dir: Path, tmp_path: Path
) -> None:
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres.url.rsplit("/", 1)[0] + "/" + name
    photos = sorted(sneakers_dir.glob("*/*.jpg"))[10:16]
    server = start_review_server(tiny_bundle_dir, tmp_path, db_url=url, retry_s=1)
    try:
        assert post_batch(server, batch_body(photos[:2], first=0)).status_code == 200
        with reviewer(server) as c:
            assert len(c.get("/v1/review/queue", params={"status": "any"}).json()["items"]) == 1
        postgres.stop()
        try:
            r = post_batch(server, batch_body(photos[2:6], first=1))
            assert r.status_code == 200 and len(r.json()["items"]) == 2  # the answer is not lost
            with reviewer(server) as c:
                down = c.get("/v1/review/queue")
            assert down.status_code == 503 and down.json()["error"]["code"] == "review_unavailable"
            spool = tmp_path / "review-spool.jsonl"
            assert len(spool.read_text().splitlines()) == 2
        finally:
            postgres.start()
        deadline = time.monotonic() + 30
        while True:
            with reviewer(server) as c:
                r = c.get("/v1/review/queue", params={"status": "any"})
            if r.status_code == 200 and len(r.json()["items"]) == 3:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
        assert spool.read_text().strip() == ""
        assert "review_spool_retried" in server.logs()
    finally:
        stop_server(server)
