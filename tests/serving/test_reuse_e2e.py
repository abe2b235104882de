"""Re-used listing photos end to end on a real ``authlens serve``: the gallery's admin routes, the
reuse check on every scored photo, listings and clusters, the CLI beside a running server."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from galleryutil import bundle_with_photo_reference, sneaker_files
from PIL import Image, ImageDraw
from serverutil import ADMIN_KEY, API_KEY, ROOT, Server, sha, start_server, stop_server

JSON = {"Content-Type": "application/json"}


def _edited(path: Path, *, size: int = 360, quality: int = 55, text: str = "@reseller_42") -> bytes:
    """A re-encoded, resized, watermarked copy, as a reseller would post it."""
    img = Image.open(path).convert("RGB").resize((size, size))
    ImageDraw.Draw(img).text((30, size // 2), text, fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(sneakers_dir: Path) -> list[Path]:
    files = sneaker_files(sneakers_dir)
    return files[:: max(1, len(files) // 40)][:12]  # spread over the set, none of the held-out reference


@pytest.fixture(scope="module")
def reuse_server(
    tiny_bundle_dir: Path, sneakers_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("reuse")
    bundle = bundle_with_photo_reference(tiny_bundle_dir, tmp / "bundle", sneakers_dir)
    s = start_server(
        bundle,
        tmp / "serve.log",
        env={
            "AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]',
            "AUTHLENS_ADMIN_KEY_HASH": sha(ADMIN_KEY),
            "AUTHLENS_GALLERY_RECORD_LISTINGS": "true",
        },
    )
    yield s
    stop_server(s)


def _add(server: Server, paths: list[Path], **fields: str) -> list[dict]:
    body = {"references": [{"data": base64.b64encode(p.read_bytes()).decode(), **fields} for p in paths]}
    with server.client(ADMIN_KEY) as admin:
        r = admin.post("/v1/admin/gallery", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_catalogue_photo_is_recognised_and_does_not_vote(reuse_server: Server, photos: list[Path]) -> None:
    added = _add(reuse_server, photos[:3], source="Nike catalogue 2026", label="Air Force 1")
    assert [a["status"] for a in added] == ["added"] * 3
    assert [a["status"] for a in _add(reuse_server, photos[:1], source="again")] == ["exists"]
    ref = added[0]["reference"]
    with reuse_server.client() as c:
        assert (
            c.post("/v1/admin/gallery", json={"references": []}).status_code == 401
        )  # the API key is no admin key
        files = [
            ("files", ("copy.jpg", _edited(photos[0]), "image/jpeg")),
            ("files", ("own.jpg", photos[5].read_bytes(), "image/jpeg")),
        ]
        r = c.post("/v1/score", files=files)
        assert r.status_code == 200, r.text
        body = r.json()
        alone = c.post(
            "/v1/score", files=[("files", ("own.jpg", photos[5].read_bytes(), "image/jpeg"))]
        ).json()
    copy, own = body["images"]
    assert copy["verdict"] == "inconclusive" and not copy["usable"]
    assert "reused_photo" in copy["inconclusive_reasons"]
    reuse = copy["reused_photo"]
    assert (
        reuse["reference_id"] == ref["id"]
        and reuse["source"] == "Nike catalogue 2026"
        and reuse["kind"] == "catalogue"
    )
    assert (
        reuse["label"] == "Air Force 1"
        and reuse["similarity"] > 0.8
        and reuse["matched_by"].startswith("hash")
    )
    assert own["reused_photo"] is None and own["usable"]
    item = body["item"]
    assert item["reused_images"] == [0] and item["images_used"] == [1]
    # the reused photo casts no vote: the item is judged on the other photo alone
    assert item["authenticity_score"] == alone["item"]["authenticity_score"]
    assert item["verdict"] == alone["item"]["verdict"]


def test_a_photo_reused_across_listings_is_reported_and_clustered(
    reuse_server: Server, photos: list[Path]
) -> None:
    listing_photo = photos[7]
    with reuse_server.client() as c:

        def batch(item_id: str, seller: str, data: bytes) -> dict:
            body = {
                "images": [
                    {
                        "id": f"{item_id}-1",
                        "item_id": item_id,
                        "seller_id": seller,
                        "data": base64.b64encode(data).decode(),
                    }
                ]
            }
            r = c.post("/v1/score/batch", json=body)
            assert r.status_code == 200, r.text
            return r.json()["results"][0]["result"]

        first = batch("L1", "S1", listing_photo.read_bytes())
        assert first["reused_photo"] is None  # new: stored as listing L1's photo
        same_listing = batch("L1", "S1", listing_photo.read_bytes())
        assert same_listing["reused_photo"] is None  # a listing scored again does not reuse itself
        second = batch("L2", "S2", _edited(listing_photo, text="@shop_two"))
        reuse = second["reused_photo"]
        assert (
            reuse is not None
            and reuse["kind"] == "listing"
            and reuse["listing_id"] == "L1"
            and reuse["seller_id"] == "S1"
        )
        assert reuse["listings_seen"] == 1 and not reuse["widely_reused"]  # counted before this sighting
        third = batch("L3", "S3", _edited(listing_photo, size=300, quality=70, text="@three"))
        assert third["reused_photo"]["listings_seen"] == 2
        fourth = batch("L4", "S3", _edited(listing_photo, size=420, quality=80, text="@four"))
        assert fourth["reused_photo"]["listings_seen"] == 3 and fourth["reused_photo"]["widely_reused"]
        assert fourth["reused_photo"]["sellers_seen"] == 3
        r = c.get("/v1/gallery/clusters", params={"min_listings": 3})
        assert r.status_code == 200, r.text
        clusters = r.json()["clusters"]
    assert len(clusters) == 1
    cluster = clusters[0]
    assert cluster["reference"]["listing_id"] == "L1"
    assert cluster["listings"] == ["L1", "L2", "L3", "L4"] and cluster["sellers"] == ["S1", "S2", "S3"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authlens", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_changes_reach_the_running_server_and_offline_scoring_agrees(
    reuse_server: Server, photos: list[Path], tmp_path: Path
) -> None:
    bundle = str(reuse_server.bundle)
    new = photos[10]
    added = _cli("gallery", "add", str(new), "--bundle", bundle, "--source", "brand site", "--label", "Dunk")
    assert added.returncode == 0, added.stderr
    ref_id = int(added.stdout.split("\t")[0])
    listed = _cli("gallery", "list", "--bundle", bundle, "--json")
    assert listed.returncode == 0 and any(
        json.loads(line)["id"] == ref_id for line in listed.stdout.splitlines()
    )
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(_edited(new))
    with reuse_server.client() as c:
        r = c.post("/v1/score", files=[("files", ("copy.jpg", copy.read_bytes(), "image/jpeg"))]).json()
        assert r["images"][0]["reused_photo"]["reference_id"] == ref_id
        assert r["item"]["inconclusive_reasons"][:2] == ["no_usable_image", "reused_photo"]
        offline = tmp_path / "out.jsonl"
        scored = _cli("score", "--bundle", bundle, str(copy), "--out", str(offline))
        assert scored.returncode == 0, scored.stderr
        line = json.loads(offline.read_text().splitlines()[0])
        assert line["images"][0]["reused_photo"] == r["images"][0]["reused_photo"]
        assert line["item"]["verdict"] == r["item"]["verdict"] == "inconclusive"
        removed = _cli("gallery", "remove", str(ref_id), "--bundle", bundle)
        assert removed.returncode == 0, removed.stderr
        again = c.post("/v1/score", files=[("files", ("copy.jpg", copy.read_bytes(), "image/jpeg"))]).json()
        assert again["images"][0]["reused_photo"] is None
    assert _cli("gallery", "remove", str(ref_id), "--bundle", bundle).returncode == 1


def test_admin_list_and_remove(reuse_server: Server, photos: list[Path]) -> None:
    ref = _add(reuse_server, photos[11:12], source="to remove", kind="listing", listing_id="X9")[0][
        "reference"
    ]
    with reuse_server.client(ADMIN_KEY) as admin:
        listed = admin.get("/v1/admin/gallery", params={"kind": "listing"}, headers=JSON).json()
        assert any(r["id"] == ref["id"] for r in listed["references"]) and listed["total"] >= 4
        assert admin.delete(f"/v1/admin/gallery/{ref['id']}", headers=JSON).json()["removed"] is True
        gone = admin.delete(f"/v1/admin/gallery/{ref['id']}", headers=JSON)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "reference_not_found"
        bad = admin.post("/v1/admin/gallery", json={"references": [{"data": "!!", "source": "s"}]})
        assert bad.status_code == 200 and bad.json()["results"][0]["error"]["code"] == "invalid_base64"
