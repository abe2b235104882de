"""The review queue end to end on a real loopback server: a crawler batch with listing metadata
lands in the queue, a reviewer ranks, opens, decides (audit trail, no deletes), gets sellers and
case files that ``authlens verify-receipt`` checks offline, and exports decisions for training."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from reviewutil import ANA_KEY, VIC_KEY, batch_body, post_batch, reviewer, start_review_server
from serverutil import API_KEY, AUTHLENS, ROOT, Server, stop_server


@pytest.fixture(scope="module")
def review_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_review_server(tiny_bundle_dir, tmp_path_factory.mktemp("review"))
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def photos(sneakers_dir: Path) -> list[Path]:
    return sorted(sneakers_dir.glob("*/*.jpg"))[:8]


@pytest.fixture(scope="module")
def scored(review_server: Server, photos: list[Path]) -> dict:
    r = post_batch(review_server, batch_body(photos))
    assert r.status_code == 200, r.text
    return r.json()


def _queue(server: Server, **params: object) -> dict:
    with reviewer(server) as c:
        r = c.get("/v1/review/queue", params={k: str(v) for k, v in params.items()})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_crawler_batch_lands_in_the_queue_ranked(review_server: Server, scored: dict) -> None:
    page = _queue(review_server, status="any", limit=200)
    assert len(page["items"]) == len(scored["items"]) == 4
    ps = [it["counterfeit_probability"] for it in page["items"]]
    assert ps == sorted(ps, reverse=True)
    by_key = {it["item_key"]: it for it in page["items"]}
    answer = {it["item_id"]: it["result"] for it in scored["items"]}
    for key, it in by_key.items():
        assert it["counterfeit_probability"] == answer[key]["counterfeit_probability"]
        assert it["listing_url"].startswith("https://shop.example/listing/")
        assert it["brand"] == "Nike" and it["marketplace"] in ("shop-a", "shop-b")
    # keyset paging returns each item once
    first = _queue(review_server, status="any", limit=3)
    rest = _queue(review_server, status="any", limit=3, cursor=first["next_cursor"])
    assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in page["items"]]
    assert rest["next_cursor"] is None
    assert {i["item_key"] for i in _queue(review_server, status="any", marketplace="shop-a")["items"]} == {
        "item-0",
        "item-2",
    }


def test_item_view_decisions_and_audit_trail(review_server: Server, scored: dict) -> None:
    page = _queue(review_server, status="any")
    item_id = page["items"][0]["id"]
    with reviewer(review_server) as c:
        item = c.get(f"/v1/review/items/{item_id}").json()
        assert item["receipt"]["signature"] and len(item["photos"]) == 2
        assert item["answer"]["items"][0]["result"]["receipt"] == item["receipt"]
        photo = c.get(item["photos"][0]["url"])
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        import hashlib

        assert hashlib.sha256(photo.content).hexdigest() == item["photos"][0]["sha256"]
        r1 = c.post(f"/v1/review/items/{item_id}/decisions", json={"status": "unsure", "note": "tag?"})
        r2 = c.post(f"/v1/review/items/{item_id}/decisions", json={"status": "confirmed_counterfeit"})
        assert r1.status_code == r2.status_code == 201
        trail = c.get(f"/v1/review/items/{item_id}/decisions").json()
    assert [(d["reviewer"], d["previous_status"], d["status"]) for d in trail] == [
        ("ana", "open", "unsure"),
        ("ana", "unsure", "confirmed_counterfeit"),
    ]
    assert trail[1]["previous_note"] == "tag?"
    assert item_id not in [i["id"] for i in _queue(review_server)["items"]]  # open items only, by default
    assert [i["id"] for i in _queue(review_server, status="confirmed_counterfeit")["items"]] == [item_id]


def test_keys_and_roles(review_server: Server, scored: dict) -> None:
    item_id = _queue(review_server, status="any")["items"][0]["id"]
    with review_server.client(API_KEY) as c:  # a crawler's key is not a reviewer's
        assert c.get("/v1/review/queue").status_code == 401
    with review_server.client(None) as c:
        assert c.get("/v1/review/queue").status_code == 401
    with reviewer(review_server, VIC_KEY) as c:
        assert c.get("/v1/review/me").json() == {"name": "vic", "role": "viewer"}
        assert c.get("/v1/review/queue").status_code == 200
        r = c.post(f"/v1/review/items/{item_id}/decisions", json={"status": "unsure"})
        assert r.status_code == 403 and "viewer" in r.json()["error"]["message"]
    with reviewer(review_server, ANA_KEY) as c:  # reviewers' keys score photos too
        assert c.get("/v1/model").status_code == 200


def test_nothing_is_ever_deleted(review_server: Server, scored: dict) -> None:
    with review_server.client(None) as c:
        spec = c.get("/openapi.json").json()
    review_paths = {p: ops for p, ops in spec["paths"].items() if p.startswith("/v1/review")}
    assert review_paths and not any("delete" in ops for ops in review_paths.values())
    item_id = _queue(review_server, status="any")["items"][0]["id"]
    with reviewer(review_server) as c:
        for path in (f"/v1/review/items/{item_id}", f"/v1/review/items/{item_id}/decisions"):
            assert c.delete(path).status_code == 405
        assert c.get(f"/v1/review/items/{item_id}").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("GET", "/v1/review/queue?status=closed", None, 422, "status"),
        ("GET", "/v1/review/queue?verdict=fake", None, 422, "verdict"),
        ("GET", "/v1/review/queue?reason=nope", None, 422, "reason"),
        ("GET", "/v1/review/queue?cursor=garbage", None, 422, "cursor"),
        ("GET", "/v1/review/queue?limit=0", None, 422, "limit"),
        ("GET", "/v1/review/queue?since=yesterday", None, 422, "since"),
        ("GET", "/v1/review/items/0", None, 422, "item_id"),
        ("GET", "/v1/review/items/abc", None, 422, "item_id"),
        ("GET", "/v1/review/items/999999", None, 404, "999999"),
        ("GET", "/v1/review/sellers/nobody", None, 404, "nobody"),
        ("GET", "/v1/review/sellers/seller-0?bucket=year", None, 422, "bucket"),
        ("POST", "/v1/review/items/1/decisions", {"status": "fake"}, 422, "status"),
        ("POST", "/v1/review/items/1/decisions", {"status": "unsure", "who": "x"}, 422, "who"),
        ("POST", "/v1/review/items/999999/decisions", {"status": "unsure"}, 404, "999999"),
    ],
)
def test_bad_review_requests_name_the_problem(
    review_server: Server, scored: dict, method: str, path: str, body: object, status: int, words: str
) -> None:
    with reviewer(review_server) as c:
        r = c.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert words in json.dumps(r.json()["error"])


@pytest.mark.parametrize(
    ("listing", "words"),
    [
        ({"listing_url": "javascript:alert(1)"}, "listing_url"),
        ({"price": -3}, "price"),
        ({"crawled_at": "2026-11-30T10:00:00"}, "crawled_at"),
        ({"colour": "red"}, "colour"),
        ({"currency": "euro"}, "currency"),
    ],
)
def test_bad_listing_metadata_is_refused_by_name(
    review_server: Server, photos: list[Path], listing: dict, words: str
) -> None:
    body = batch_body(photos[:1])
    body["images"][0]["listing"] = listing  # type: ignore[index]
    r = post_batch(review_server, body)
    assert r.status_code == 422 and words in r.json()["error"]["message"], r.text


def test_multipart_batches_carry_listings(review_server: Server, photos: list[Path]) -> None:
    files = [("files", (f"m{k}.jpg", p.read_bytes(), "image/jpeg")) for k, p in enumerate(photos[:2])]
    data = {
        "item_ids": ["mp-1", "mp-1"],
        "listings": [json.dumps({"item_id": "mp-1", "marketplace": "shop-m", "title": "multipart"})],
    }
    with review_server.client(API_KEY) as c:
        r = c.post("/v1/score/batch", files=files, data=data)
        assert r.status_code == 200, r.text
        bad = c.post("/v1/score/batch", files=files, data={**data, "listings": ["{not json"]})
        assert bad.status_code == 422 and "listings" in bad.json()["error"]["message"]
    assert [i["title"] for i in _queue(review_server, status="any", marketplace="shop-m")["items"]] == [
        "multipart"
    ]


def test_case_files_verify_offline(review_server: Server, scored: dict, tmp_path: Path) -> None:
    item_id = _queue(review_server, status="any")["items"][0]["id"]
    with reviewer(review_server) as c:
        r = c.get(f"/v1/review/items/{item_id}/case")
        seller = c.get(f"/v1/review/items/{item_id}").json()["seller_id"]
        s = c.get(f"/v1/review/sellers/{seller}/case")
        info = c.get(f"/v1/review/sellers/{seller}").json()
        pem = c.get("/v1/receipts/public-key").json()["public_key_pem"]
    assert r.status_code == s.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert info["totals"]["listings"] >= 1
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(z.namelist())
    assert {"case.json", "summary.html", "receipt-key.pub", f"items/{item_id}/answer.json"} <= names
    assert sum(n.startswith("photos/") for n in names) == 2
    assert "seller.json" in zipfile.ZipFile(io.BytesIO(s.content)).namelist()
    key = tmp_path / "server.pub"
    key.write_text(pem)
    for name, blob in (("item.zip", r.content), ("seller.zip", s.content)):
        (tmp_path / name).write_bytes(blob)
        out = subprocess.run(
            [*AUTHLENS, "verify-receipt", str(tmp_path / name), "--public-key", str(key)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0 and "VALID" in out.stdout, out.stderr
    # without --public-key: the case's own key, with a warning to compare it
    out = subprocess.run(
        [*AUTHLENS, "verify-receipt", str(tmp_path / "item.zip")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "compare it" in out.stderr
    # an edited verdict or a swapped photo fails
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as t:
        for n in z.namelist():
            data = z.read(n)
            if n == f"items/{item_id}/answer.json":
                doc = json.loads(data)
                doc["items"][0]["result"]["verdict"] = (
                    "genuine" if doc["items"][0]["result"]["verdict"] != "genuine" else "counterfeit"
                )
                data = json.dumps(doc).encode()
            if n.startswith("photos/"):
                data = data + b"x"
            t.writestr(n, data)
    out = subprocess.run(
        [*AUTHLENS, "verify-receipt", str(tampered), "--public-key", str(key)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "verdict" in out.stderr and "hash" in out.stderr


def test_export_reviews_feeds_training(review_server: Server, scored: dict, tmp_path: Path) -> None:
    from training.data.manifest import load_manifest

    with reviewer(review_server) as c:
        ids = [i["id"] for i in _queue(review_server, status="open")["items"]]
        c.post(f"/v1/review/items/{ids[0]}/decisions", json={"status": "confirmed_genuine", "note": "ok"})
    out = subprocess.run(
        [
            *AUTHLENS,
            "data",
            "export-reviews",
            "--bundle",
            str(review_server.bundle),
            "--out",
            str(tmp_path / "rev"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    records = load_manifest(tmp_path / "rev" / "manifest.csv")
    labels = sorted(r.label for r in records)
    assert "genuine" in labels and "counterfeit" in labels
    assert all(r.extra["source"] == "review" and r.item_id.startswith("review-") for r in records)
    assert any(r.brand == "Nike" for r in records)


def test_storing_is_off_by_default(tiny_bundle_dir: Path, tmp_path: Path, photos: list[Path]) -> None:
    from serverutil import copy_bundle, start_server

    s = start_server(copy_bundle(tiny_bundle_dir, tmp_path / "bundle"), tmp_path / "serve.log")
    try:
        with s.client(None) as c:
            r = c.post("/v1/score/batch", json=batch_body(photos[:2]))
            assert r.status_code == 200
            assert c.get("/v1/review/queue").json()["error"]["code"] == "review_disabled"
    finally:
        stop_server(s)
    assert not (tmp_path / "review.sqlite").exists()
