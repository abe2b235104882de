"""What a real server answers when the bundle's decision settings bite: OOD photos, raised flags.

The tiny bundle's own settings never fire (random weights; OOD threshold out of reach), so this
module re-seals a copy whose out-of-distribution threshold every photo exceeds and whose flag
thresholds every photo reaches, then checks the answers and the metrics end to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from factories import jpeg_bytes
from serverutil import Server, copy_bundle, start_server, stop_server

from model.bundle import rewrite_manifest
from model.flags import FLAG_NAMES


def _server_with(tiny_bundle_dir: Path, tmp: Path, changes: dict) -> Server:
    bundle = copy_bundle(tiny_bundle_dir, tmp / "bundle")
    rewrite_manifest(bundle, changes)
    return start_server(bundle, tmp / "serve.log")


@pytest.fixture(scope="module")
def ood_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Every photo scores above the OOD threshold."""
    s = _server_with(tiny_bundle_dir, tmp_path_factory.mktemp("ood"), {"ood": {"threshold": 0.0}})
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def flag_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Every flag threshold is 0: every usable photo raises every flag."""
    changes = {"decision": {"flag_thresholds": {f: 0.0 for f in FLAG_NAMES}}}
    s = _server_with(tiny_bundle_dir, tmp_path_factory.mktemp("flags"), changes)
    yield s
    stop_server(s)


def test_out_of_distribution_photos_are_inconclusive_and_counted(ood_server: Server) -> None:
    photos = [jpeg_bytes(640, 480, seed=1), jpeg_bytes(480, 640, seed=2)]
    with ood_server.client() as c:
        r = c.post("/v1/score", files=[("files", (f"p{i}.jpg", p)) for i, p in enumerate(photos)])
        metrics = c.get("/metrics").text
    assert r.status_code == 200, r.text
    item = r.json()["item"]
    assert item["verdict"] == "inconclusive"
    assert "out_of_distribution" in item["inconclusive_reasons"]
    assert all("out_of_distribution" in im["inconclusive_reasons"] for im in r.json()["images"])
    assert "authlens_images_out_of_distribution_total 2.0" in metrics
    assert "authlens_out_of_distribution_rate 1.0" in metrics
    assert item["flagged_features"] == []  # unusable photos raise no flag


def test_a_batch_of_ood_photos_is_answered_per_image(ood_server: Server) -> None:
    import base64

    images = [
        {"id": f"c{i}", "data": base64.b64encode(jpeg_bytes(320, 240, seed=i)).decode()} for i in range(3)
    ]
    with ood_server.client() as c:
        r = c.post("/v1/score/batch", json={"images": images})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["id"] for x in results] == ["c0", "c1", "c2"]
    assert all(
        x["status"] == "ok" and "out_of_distribution" in x["result"]["inconclusive_reasons"] for x in results
    )
    assert all(i["result"]["verdict"] == "inconclusive" for i in r.json()["items"])


def test_raised_flags_carry_boxes_inside_their_photo(flag_server: Server) -> None:
    photos = [jpeg_bytes(640, 480, seed=3), jpeg_bytes(300, 900, seed=4)]
    with flag_server.client() as c:
        r = c.post("/v1/score", files=[("files", (f"p{i}.jpg", p)) for i, p in enumerate(photos)])
    assert r.status_code == 200, r.text
    body = r.json()
    flagged = body["item"]["flagged_features"]
    assert {f["name"] for f in flagged} == set(FLAG_NAMES)  # every threshold is 0: every flag is raised
    for f in flagged:
        im = body["images"][f["image_index"]]
        b = f["box"]
        assert 0 <= b["x0"] < b["x1"] <= im["width"] and 0 <= b["y0"] < b["y1"] <= im["height"]
        assert f["score"] >= f["threshold"] == 0.0
