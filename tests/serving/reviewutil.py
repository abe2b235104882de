"""Helpers for the review queue's tests: reviewer keys, a review-enabled server, crawler batches."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from serverutil import API_KEY, Server, copy_bundle, sha, start_server

ANA_KEY = "review-key-ana-0123456789"
VIC_KEY = "review-key-vic-0123456789"
REVIEWERS = [
    {"name": "ana", "role": "investigator", "key_hash": sha(ANA_KEY)},
    {"name": "vic", "role": "viewer", "key_hash": sha(VIC_KEY)},
]


def start_review_server(
    bundle_src: Path, tmp: Path, *, db_url: str | None = None, retry_s: float = 30
) -> Server:
    """A server with the review queue on, a crawler API key and two reviewers (ana decides, vic reads)."""
    bundle = copy_bundle(bundle_src, tmp / "bundle")
    env = {
        "AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]',
        "AUTHLENS_REVIEW_ENABLED": "true",
        "AUTHLENS_REVIEWERS": json.dumps(REVIEWERS),
        "AUTHLENS_REVIEW_RETRY_S": str(retry_s),
        "AUTHLENS_GALLERY_RECORD_LISTINGS": "true",
    }
    if db_url is not None:
        env["AUTHLENS_REVIEW_DB_URL"] = db_url
    return start_server(bundle, tmp / "serve.log", env=env)


def listing(n: int, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "marketplace": "shop-a" if n % 2 == 0 else "shop-b",
        "listing_url": f"https://shop.example/listing/{n}",
        "seller_id": f"seller-{n % 3}",
        "price": 40.0 + n,
        "currency": "EUR",
        "title": f"Sneakers listing {n}",
        "brand": "Nike",
        "category": "sneakers",
        "crawled_at": "2026-11-30T10:00:00Z",
        "client_id": "crawler-1",
    }
    base.update(over)
    return base


def batch_body(photos: list[Path], *, first: int = 0, per_item: int = 2) -> dict[str, object]:
    """JSON batch: items of ``per_item`` photos, each with listing metadata on its first image."""
    images = []
    for k, path in enumerate(photos):
        n = first + k // per_item
        entry: dict[str, object] = {
            "id": f"img-{first}-{k}",
            "data": base64.b64encode(path.read_bytes()).decode(),
            "item_id": f"item-{n}",
        }
        if k % per_item == 0:
            entry["listing"] = listing(n)
        images.append(entry)
    return {"images": images}


def post_batch(server: Server, body: dict[str, object]) -> httpx.Response:
    with server.client(API_KEY) as c:
        return c.post("/v1/score/batch", json=body)


def reviewer(server: Server, key: str = ANA_KEY) -> httpx.Client:
    return server.client(key)
