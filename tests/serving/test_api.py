"""End-to-end: a real ``authlens serve`` process on loopback, every endpoint, no mocks."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from factories import jpeg_bytes
from PIL import Image
from serverutil import ADMIN_KEY, API_KEY, AUTHLENS, ROOT, Server

from model.bundle import load_bundle


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header declares 400 MP (IHDR patched after a 1x1 encode, CRC fixed)."""
    import struct
    import zlib

    data = bytearray(_png(1, 1))
    ihdr = 8 + 8  # signature + length/type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def test_score_one_item(server: Server) -> None:
    photos = [jpeg_bytes(640, 480, seed=1), jpeg_bytes(480, 640, seed=2)]
    with server.client() as c:
        r = c.post(
            "/v1/score", files=[("files", (f"p{i}.jpg", b, "image/jpeg")) for i, b in enumerate(photos)]
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    bundle = load_bundle(server.bundle)
    assert body["model"] == {"name": "tiny", "version": "test", "bundle_sha256": bundle.sha256}
    item = body["item"]
    assert item["verdict"] in ("genuine", "counterfeit", "inconclusive")
    assert item["authenticity_score"] == pytest.approx(1 - item["counterfeit_probability"], abs=2e-6)
    import hashlib

    assert item["input_sha256"] == [hashlib.sha256(b).hexdigest() for b in photos]
    assert [im["sha256"] for im in body["images"]] == item["input_sha256"]
    assert [(im["width"], im["height"]) for im in body["images"]] == [(640, 480), (480, 640)]
    for f in item["flagged_features"]:
        im = body["images"][f["image_index"]]
        b = f["box"]
        assert 0 <= b["x0"] < b["x1"] <= im["width"] and 0 <= b["y0"] < b["y1"] <= im["height"]
        assert f["score"] >= f["threshold"]
    if item["verdict"] != "inconclusive":
        assert item["inconclusive_reasons"] == []
    assert body["timings"]["total_ms"] > 0
    assert item["receipt"]["algorithm"] == "Ed25519"
    assert body["images"][0]["explanation"] is None


def test_item_verdict_is_mean_logit_of_photos(server: Server) -> None:
    from model.decision import logit, sigmoid

    photos = [jpeg_bytes(320, 240, seed=s) for s in (3, 4, 5)]
    with server.client() as c:
        body = c.post("/v1/score", files=[("files", (f"{i}.jpg", b)) for i, b in enumerate(photos)]).json()
    ps = [im["counterfeit_probability"] for im in body["images"]]
    expected = sigmoid(sum(logit(p) for p in ps) / len(ps))
    assert body["item"]["counterfeit_probability"] == pytest.approx(expected, abs=1e-5)
    assert body["item"]["images_used"] == [0, 1, 2]


def test_small_photo_is_inconclusive_and_does_not_vote(server: Server) -> None:
    # tiny bundle: min_image_side = 32
    with server.client() as c:
        body = c.post("/v1/score", files=[("files", ("s.png", _png(20, 20)))]).json()
        mixed = c.post(
            "/v1/score",
            files=[("files", ("s.png", _png(20, 20))), ("files", ("b.jpg", jpeg_bytes(320, 240)))],
        ).json()
    assert body["images"][0]["inconclusive_reasons"] == ["image_too_small"]
    assert body["item"]["verdict"] == "inconclusive"
    assert body["item"]["inconclusive_reasons"][:2] == ["no_usable_image", "image_too_small"]
    assert body["item"]["flagged_features"] == []
    assert mixed["item"]["images_used"] == [1]
    assert mixed["item"]["counterfeit_probability"] == mixed["images"][1]["counterfeit_probability"]


def test_explain_adds_aligned_png_overlay(server: Server) -> None:
    with server.client() as c:
        body = c.post("/v1/score?explain=true", files=[("files", ("w.jpg", jpeg_bytes(800, 400)))]).json()
    ex = body["images"][0]["explanation"]
    overlay = Image.open(io.BytesIO(base64.b64decode(ex["overlay_png_base64"])))
    assert overlay.format == "PNG" and overlay.mode == "RGBA"
    assert overlay.size == (ex["width"], ex["height"]) == (512, 256)
    alpha = np.asarray(overlay)[..., 3]
    assert alpha.max() > 100 and alpha.min() == 0  # strongest evidence opaque, weakest transparent
    preview = Image.open(io.BytesIO(base64.b64decode(ex["preview_jpeg_base64"])))
    assert preview.size == overlay.size


def test_exif_rotated_photo_reports_oriented_size(server: Server) -> None:
    # stored 640x480 with orientation 6 (rotate 90): the photo as seen is 480x640
    with server.client() as c:
        body = c.post(
            "/v1/score", files=[("files", ("r.jpg", jpeg_bytes(640, 480, exif_orientation=6)))]
        ).json()
    im = body["images"][0]
    assert (im["width"], im["height"]) == (480, 640)
    for f in im["flagged_features"]:
        assert f["box"]["x1"] <= 480 and f["box"]["y1"] <= 640


def test_content_is_sniffed_not_trusted(server: Server) -> None:
    with server.client() as c:
        png_named_jpg = c.post("/v1/score", files=[("files", ("x.jpg", _png(200, 200), "image/jpeg"))])
        text_named_jpg = c.post(
            "/v1/score", files=[("files", ("x.jpg", b"hello, not an image", "image/jpeg"))]
        )
    assert png_named_jpg.status_code == 200 and png_named_jpg.json()["images"][0]["format"] == "PNG"
    assert text_named_jpg.status_code == 422
    assert text_named_jpg.json()["error"]["code"] == "unsupported_format"


def test_heic_photo_is_scored(server: Server) -> None:
    import pillow_heif

    img = Image.fromarray(np.asarray(Image.open(io.BytesIO(jpeg_bytes(400, 300)))))
    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=90)
    with server.client() as c:
        r = c.post("/v1/score", files=[("files", ("iphone.heic", buf.getvalue(), "image/heic"))])
    assert r.status_code == 200, r.text
    assert r.json()["images"][0]["format"] == "HEIF"
    assert (r.json()["images"][0]["width"], r.json()["images"][0]["height"]) == (400, 300)


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ([], 415, "unsupported_media_type"),
        ([("files", ("e.jpg", b""))], 422, "empty_file"),
        ([("files", ("b.png", _bomb_png()))], 422, "image_too_large"),
        ([("files", ("t.jpg", jpeg_bytes(64, 64)[:300]))], 422, "corrupt_image"),
        ([("files", (f"{i}.jpg", b"x")) for i in range(9)], 422, "too_many_files"),
        ([("files", ("g.gif", b"GIF89a" + b"\0" * 20))], 422, "unsupported_format"),
    ],
    ids=["no-files", "empty", "bomb", "truncated", "nine-files", "gif"],
)
def test_bad_input_gets_json_error_with_code(server: Server, files: list, status: int, code: str) -> None:
    with server.client() as c:
        r = c.post("/v1/score", files=files) if files else c.post("/v1/score", data={"x": "1"})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code
    assert body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text


def test_bomb_is_refused_before_decoding(server: Server) -> None:
    """400 MP declared in 70 bytes: answered fast and the server's memory stays small."""
    with server.client() as c:
        r = c.post("/v1/score", files=[("files", ("b.png", _bomb_png(60000, 60000)))])
    assert r.json()["error"]["code"] == "image_too_large"
    assert float(r.json()["error"]["message"].split(" = ")[1].split(" MP")[0]) == pytest.approx(
        3600, rel=0.01
    )


def test_api_key_required_and_compared(server: Server) -> None:
    jpg = [("files", ("a.jpg", jpeg_bytes(100, 100)))]
    with server.client(key=None) as c:
        assert c.post("/v1/score", files=jpg).json()["error"]["code"] == "unauthorized"
        assert c.post("/v1/score", files=jpg, headers={"X-API-Key": "wrong"}).status_code == 401
        assert (
            c.post("/v1/score", files=jpg, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        )
        assert c.post("/v1/score", files=jpg, headers={"X-API-Key": ADMIN_KEY}).status_code == 401
        assert c.get("/healthz").status_code == 200  # probes need no key
        assert c.get("/v1/receipts/public-key").status_code == 200
        assert c.post("/v1/admin/reload", headers={"X-API-Key": API_KEY}).status_code == 401


def test_batch_multipart_with_per_image_errors_and_items(server: Server) -> None:
    parts = [
        ("files", ("a.jpg", jpeg_bytes(300, 200, seed=1))),
        ("files", ("b.jpg", b"garbage")),
        ("files", ("c.jpg", jpeg_bytes(300, 200, seed=3))),
        ("files", ("d.jpg", jpeg_bytes(300, 200, seed=4))),
    ]
    data = {"ids": ["A", "B", "C", "D"], "item_ids": ["", "", "bag-1", "bag-1"]}
    with server.client() as c:
        r = c.post("/v1/score/batch", files=parts, data=data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["id"], x["status"]) for x in body["results"]] == [
        ("A", "ok"),
        ("B", "error"),
        ("C", "ok"),
        ("D", "ok"),
    ]
    assert body["results"][1]["error"]["code"] == "unsupported_format"
    items = {(i["item_id"], tuple(i["image_ids"])): i for i in body["items"]}
    assert set(items) == {(None, ("A",)), (None, ("B",)), ("bag-1", ("C", "D"))}
    assert items[(None, ("B",))]["status"] == "error"
    bag = items[("bag-1", ("C", "D"))]["result"]
    assert bag["input_sha256"] == [
        body["results"][2]["result"]["sha256"],
        body["results"][3]["result"]["sha256"],
    ]
    assert bag["receipt"] is not None


def test_batch_json_base64(server: Server) -> None:
    imgs = [
        {"id": "x1", "data": base64.b64encode(jpeg_bytes(200, 200, seed=7)).decode()},
        {"id": "x2", "data": "not base64!"},
    ]
    with server.client() as c:
        r = c.post("/v1/score/batch", json={"images": imgs})
        dup = c.post("/v1/score/batch", json={"images": [imgs[0], imgs[0]]})
        too_many = c.post(
            "/v1/score/batch", json={"images": [{"id": str(i), "data": "AA=="} for i in range(65)]}
        )
        bad_type = c.post("/v1/score/batch", content=b"x", headers={"Content-Type": "text/plain"})
        bad_json = c.post("/v1/score/batch", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == ["ok", "error"]
    assert r.json()["results"][1]["error"]["code"] == "invalid_base64"
    assert dup.json()["error"]["code"] == "duplicate_ids"
    assert too_many.json()["error"]["code"] == "too_many_files"
    assert bad_type.status_code == 415 and bad_type.json()["error"]["code"] == "unsupported_media_type"
    assert bad_json.status_code == 422 and bad_json.json()["error"]["code"] == "invalid_request"


def test_batch_and_single_agree(server: Server) -> None:
    photo = jpeg_bytes(333, 222, seed=11)
    with server.client() as c:
        single = c.post("/v1/score", files=[("files", ("p.jpg", photo))]).json()
        batch = c.post(
            "/v1/score/batch", json={"images": [{"id": "p.jpg", "data": base64.b64encode(photo).decode()}]}
        ).json()
    a = single["images"][0]
    b = batch["results"][0]["result"]
    assert {k: v for k, v in a.items() if k != "filename"} == {k: v for k, v in b.items() if k != "filename"}


def test_request_body_limit_is_json(server: Server) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (101 * 2**20)
    with server.client() as c:
        r = c.post("/v1/score", files=[("files", ("big.jpg", big))])
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_broken_multipart_is_a_documented_400(server: Server) -> None:
    """A body that claims multipart but is not: JSON 400 with its code, and the schema says so."""
    headers = {"Content-Type": "multipart/form-data; boundary=abc"}
    with server.client() as c:
        r = c.post("/v1/score", content=b"--abc\r\nNone--abc--\r\n", headers=headers)
        documented = c.get("/openapi.json").json()["paths"]["/v1/score"]["post"]["responses"]
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    assert "400" in documented


def test_ops_endpoints(server: Server) -> None:
    with server.client() as c:
        c.post("/v1/score", files=[("files", ("m.jpg", jpeg_bytes(120, 120)))])
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["bundle_sha256"] == load_bundle(server.bundle).sha256
        info = c.get("/v1/model").json()
        metrics = c.get("/metrics").text
        docs = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    assert info["model"]["name"] == "tiny" and info["decision"]["counterfeit_threshold"] == 0.6
    assert [f["name"] for f in info["flags"]][:1] == ["logo_font"] and info["reasons"]["low_confidence"]
    assert 'authlens_requests_total{method="POST",route="/v1/score",status="200"}' in metrics
    for name in (
        "authlens_request_duration_seconds_bucket",
        "authlens_batch_size_bucket",
        "authlens_queue_depth",
        'authlens_verdicts_total{level="item"',
        "authlens_images_scored_total",
        "authlens_images_out_of_distribution_total",
        "authlens_model_info{",
    ):
        assert name in metrics, name
    schemas = docs["components"]["schemas"]
    assert {"ScoreResponse", "ItemResult", "BatchResponse", "ModelInfo", "ReloadResult"} <= set(schemas)
    for model, schema in schemas.items():
        if model.startswith(("Body_", "HTTPValidationError", "ValidationError")):
            continue  # FastAPI's own: form bodies and its 422 for malformed parameters
        undocumented = [k for k, p in schema.get("properties", {}).items() if not p.get("description")]
        assert not undocumented, (model, undocumented)
    assert "multipart/form-data" in docs["paths"]["/v1/score/batch"]["post"]["requestBody"]["content"]


def test_offline_score_matches_api(server: Server, tmp_path: Path) -> None:
    photos = {f"p{i}.jpg": jpeg_bytes(300 + 40 * i, 260, seed=20 + i) for i in range(3)}
    for name, data in photos.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [*AUTHLENS, "score", "--bundle", str(server.bundle), str(tmp_path), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3
    with server.client() as c:
        for line in lines:
            name = Path(line["files"][0]).name
            api = c.post("/v1/score", files=[("files", (name, photos[name]))]).json()
            api["item"].pop("receipt")
            line["item"].pop("receipt")
            assert line["item"] == api["item"]
            assert line["images"] == api["images"]
            assert line["model"] == api["model"]


def test_docs_pages_reference_no_external_host(server: Server) -> None:
    """/docs loads its script, style and icon from this server (air-gapped users)."""
    with server.client(key=None) as c:
        assert c.get("/redoc").status_code == 404  # ReDoc's page always fetches a logo from its CDN
        for page in ("/docs",):
            r = c.get(page)
            assert r.status_code == 200
            refs = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
            assert len(refs) >= 3, refs
            assert not re.search(r"https?://|//[a-z]", r.text), r.text  # no absolute URL at all
            for ref in refs:
                assert ref.startswith("/"), ref
                assert c.get(ref).status_code == 200, ref
        assert '"validatorUrl": null' in c.get("/docs").text  # Swagger UI's badge calls an outside host
