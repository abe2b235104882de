"""Settings that refuse unsafe values, key handling, and evidence receipts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from factories import jpeg_bytes
from pydantic import ValidationError
from serverutil import AUTHLENS, ROOT, Server, sha

from serving.api.deps import key_matches
from serving.api.middleware import AccessGuard
from serving.core.config import Settings
from serving.receipts import (
    ReceiptError,
    ReceiptSigner,
    find_receipts,
    load_public_key,
    public_key_pem,
    verify_receipt,
    write_private_key,
)


def test_non_loopback_without_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"Refusing to listen on 0\.0\.0\.0"):
        Settings(bundle=tmp_path, host="0.0.0.0")
    assert Settings(bundle=tmp_path, host="0.0.0.0", allow_insecure=True).host == "0.0.0.0"
    assert Settings(bundle=tmp_path, host="0.0.0.0", api_key_hashes=[sha("k")]).auth_enabled
    assert Settings(bundle=tmp_path, host="::1").host == "::1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"api_key_hashes": ["plain-text-key"]}, "SHA-256 hex digest"),
        ({"admin_key_hash": sha("k"), "api_key_hashes": [sha("k")]}, "separate admin key"),
        ({"cors_origins": ["*"]}, "any web page"),
        ({"queue_size": 8, "max_batch_images": 64}, "queue_size 8"),
        ({"max_pixels": 10**9}, "less than or equal"),
        ({"max_file_bytes": 50 * 2**20, "max_request_bytes": 10 * 2**20}, "must not exceed"),
        ({"receipt_key_file": "/nonexistent/key.pem"}, "does not exist"),
    ],
)
def test_unsafe_settings_are_refused(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(bundle=tmp_path, **fields)


def test_world_readable_receipt_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    write_private_key(key)
    assert Settings(bundle=tmp_path, receipt_key_file=key).receipt_key_file == key
    key.chmod(0o644)
    with pytest.raises(ValidationError, match="chmod 600"):
        Settings(bundle=tmp_path, receipt_key_file=key)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTHLENS_BUNDLE", str(tmp_path))
    monkeypatch.setenv("AUTHLENS_API_KEY_HASHES", json.dumps([sha("a"), sha("b")]))
    monkeypatch.setenv("AUTHLENS_BATCH_MAX_WAIT_MS", "2.5")
    s = Settings()  # type: ignore[call-arg]
    assert s.api_key_hashes == [sha("a"), sha("b")] and s.batch_max_wait_ms == 2.5


def test_key_comparison() -> None:
    hashes = [sha("alpha"), sha("beta")]
    assert (
        key_matches("beta", hashes)
        and not key_matches("gamma", hashes)
        and not key_matches(sha("beta"), hashes)
    )


def test_serve_refuses_insecure_bind_with_one_line(tiny_bundle_dir: Path) -> None:
    proc = subprocess.run(
        [*AUTHLENS, "serve", "--bundle", str(tiny_bundle_dir), "--host", "0.0.0.0", "--port", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "Refusing to listen on 0.0.0.0" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_reads_host_from_the_environment(tiny_bundle_dir: Path) -> None:
    proc = subprocess.run(
        [*AUTHLENS, "serve", "--bundle", str(tiny_bundle_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "AUTHLENS_HOST": "0.0.0.0", "AUTHLENS_PORT": "1"},
    )
    assert proc.returncode == 2 and "Refusing to listen on 0.0.0.0" in proc.stderr


def test_receipt_round_trip_and_tampering(tmp_path: Path) -> None:
    signer = ReceiptSigner(write_private_key(tmp_path / "k.pem"), ephemeral=False)
    receipt = signer.sign(
        {"verdict": "counterfeit", "authenticity_score": 0.123456, "inputs": ["ab"]}
    ).model_dump()
    public = load_public_key((tmp_path / "k.pem.pub").read_text())
    assert verify_receipt(receipt, public)["verdict"] == "counterfeit"
    forged = json.loads(json.dumps(receipt))
    forged["payload"]["verdict"] = "genuine"
    with pytest.raises(ReceiptError, match="Signature does not match"):
        verify_receipt(forged, public)
    other = ReceiptSigner.from_settings(None)
    with pytest.raises(ReceiptError, match="not by the given public key"):
        verify_receipt(receipt, other.public_key)
    with pytest.raises(ReceiptError, match="refusing to overwrite"):
        write_private_key(tmp_path / "k.pem")
    assert load_public_key(public_key_pem(public)).public_bytes_raw() == public.public_bytes_raw()


def test_served_receipts_verify_with_the_published_key(server: Server, tmp_path: Path) -> None:
    with server.client() as c:
        body = c.post("/v1/score", files=[("files", ("a.jpg", jpeg_bytes(200, 150)))]).json()
        key = c.get("/v1/receipts/public-key").json()
    payload = body["item"]["receipt"]["payload"]
    assert payload["input_sha256"] == body["item"]["input_sha256"]
    assert payload["model"]["bundle_sha256"] == body["model"]["bundle_sha256"]
    assert payload["verdict"] == body["item"]["verdict"] and payload["request_id"] == body["request_id"]
    assert key["ephemeral"] is True and key["key_id"] == body["item"]["receipt"]["key_id"]
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps(body))
    pub = tmp_path / "server.pub"
    pub.write_text(key["public_key_pem"])
    ok = subprocess.run(
        [*AUTHLENS, "verify-receipt", str(answer), "--server", server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"VALID {body['item']['verdict']}")
    body["item"]["receipt"]["payload"]["authenticity_score"] = 0.999
    answer.write_text(json.dumps(body))
    bad = subprocess.run(
        [*AUTHLENS, "verify-receipt", str(answer), "--public-key", str(pub)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "INVALID" in bad.stderr


# admin safety ------------------------------------------------------------------------------------
def test_admin_is_closed_beyond_loopback_without_an_admin_key(tmp_path: Path) -> None:
    """``--allow-insecure`` lets a keyless server listen beyond loopback; it never opens admin."""
    assert Settings(bundle=tmp_path).admin_open
    assert not Settings(bundle=tmp_path, host="0.0.0.0", allow_insecure=True).admin_open
    assert not Settings(bundle=tmp_path, api_key_hashes=[sha("k")]).admin_open
    assert not Settings(bundle=tmp_path, admin_key_hash=sha("a")).admin_open  # the key is needed


def _app(tmp_path: Path, **fields: object):
    from fastapi.testclient import TestClient

    from serving.main import create_app

    # the guard answers before routing: no bundle needs to load for these requests
    return TestClient(create_app(Settings(bundle=tmp_path, **fields)), base_url="http://127.0.0.1:8000")


def test_admin_refusals_come_before_any_work(tmp_path: Path) -> None:
    c = _app(tmp_path, host="0.0.0.0", allow_insecure=True)
    r = c.post("/v1/admin/reload", headers={"Content-Type": "application/json"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"
    c = _app(tmp_path)  # keyless, loopback: open to same-host requests only
    for headers in (
        {"Content-Type": "text/plain", "Origin": "http://evil.example", "Host": "evil.example"},
        {"Content-Type": "application/json", "Host": "attacker.example:8000"},
        {"Content-Type": "application/json", "Origin": "https://evil.example"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
    ):
        r = c.post("/v1/admin/reload", headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site_refused", (headers, r.text)
    ok_origin = {"Content-Type": "application/json", "Origin": "http://127.0.0.1:8000"}
    assert AccessGuard(lambda *a: None, Settings(bundle=tmp_path))._cross_site(_scope(ok_origin)) is None


def _scope(headers: dict[str, str]) -> dict:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"Host": "127.0.0.1:8000", **headers}.items()]
    return {"type": "http", "method": "POST", "path": "/v1/admin/reload", "headers": raw}


def test_keys_are_checked_before_the_body_is_read(tmp_path: Path) -> None:
    """The issue: /v1/score's multipart form was parsed before the API key was checked."""
    seen: list[str] = []

    async def app(scope: dict, receive, send) -> None:
        seen.append(scope["path"])

    guard = AccessGuard(app, Settings(bundle=tmp_path, api_key_hashes=[sha("k")]))
    sent: list[dict] = []

    async def receive() -> dict:
        raise AssertionError("the body was read")

    async def send(message: dict) -> None:
        sent.append(message)

    import asyncio

    scope = _scope({"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "50000000"})
    for path in ("/v1/score", "/v1/score/batch", "/v1/model", "/metrics"):
        asyncio.run(guard({**scope, "path": path}, receive, send))
    assert not seen and [m["status"] for m in sent if m["type"] == "http.response.start"] == [401] * 4
    asyncio.run(guard({**_scope({"X-API-Key": "k"}), "path": "/v1/score"}, receive, send))
    assert seen == ["/v1/score"]


# receipts ------------------------------------------------------------------------------------------
def _served(server: Server) -> tuple[dict, dict, dict]:
    import base64

    with server.client() as c:
        single = c.post(
            "/v1/score",
            files=[("files", ("a.jpg", jpeg_bytes(200, 150)))],
            headers={"X-Request-ID": "case-42"},
        ).json()
        photos = [base64.b64encode(jpeg_bytes(160, 120, seed=k)).decode() for k in range(3)]
        batch = c.post(
            "/v1/score/batch",
            json={
                "images": [
                    {"id": "front", "data": photos[0], "item_id": "bag-7"},
                    {"id": "tag", "data": photos[1], "item_id": "bag-7"},
                    {"id": "lone", "data": photos[2]},
                ]
            },
        ).json()
        key = c.get("/v1/receipts/public-key").json()
    return single, batch, key


def test_receipts_sign_server_ids_and_the_item(server: Server) -> None:
    single, batch, _ = _served(server)
    payload = single["item"]["receipt"]["payload"]
    assert payload["receipt_version"] == 2 and len(payload["receipt_id"]) == 32
    assert payload["request_id"] == single["request_id"] != "case-42"  # the server's id is signed
    assert single["client_request_id"] == "case-42" and "case-42" not in json.dumps(payload)
    bag = next(i for i in batch["items"] if i["item_id"] == "bag-7")["result"]["receipt"]["payload"]
    assert bag["item_id"] == "bag-7" and bag["image_ids"] == ["front", "tag"]
    lone = next(i for i in batch["items"] if i["item_id"] is None)["result"]["receipt"]["payload"]
    assert lone["item_id"] is None and lone["image_ids"] == ["lone"]
    ids = {payload["receipt_id"], bag["receipt_id"], lone["receipt_id"]}
    assert len(ids) == 3


def _verify(path: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AUTHLENS, "verify-receipt", str(path), "--public-key", str(pub)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_verify_receipt_checks_the_answer_around_the_receipt(server: Server, tmp_path: Path) -> None:
    """An intact receipt next to an edited verdict used to pass: only the payload was checked."""
    single, batch, key = _served(server)
    pub = tmp_path / "server.pub"
    pub.write_text(key["public_key_pem"])
    answer = tmp_path / "answer.json"
    for doc in (single, batch):
        answer.write_text(json.dumps(doc))
        ok = _verify(answer, pub)
        assert ok.returncode == 0 and ok.stdout.count("VALID") == len(find_receipts(doc)), ok.stderr
    edits = {
        "verdict": lambda d: d["item"].update(
            verdict="genuine" if d["item"]["verdict"] != "genuine" else "counterfeit"
        ),
        "score": lambda d: d["item"].update(authenticity_score=0.999),
        "photos": lambda d: d["item"].update(input_sha256=["0" * 64]),
        "model": lambda d: d["model"].update(bundle_sha256="f" * 64),
        "request": lambda d: d.update(request_id="someone-else"),
    }
    for name, edit in edits.items():
        doc = json.loads(json.dumps(single))
        edit(doc)
        answer.write_text(json.dumps(doc))
        bad = _verify(answer, pub)
        assert bad.returncode == 1 and "differs from its signed payload" in bad.stderr, (name, bad.stderr)
    doc = json.loads(json.dumps(batch))
    next(i for i in doc["items"] if i["item_id"] == "bag-7")["image_ids"] = ["tag", "front"]
    answer.write_text(json.dumps(doc))
    assert _verify(answer, pub).returncode == 1


def test_verify_receipt_reads_strict_json_and_never_shows_a_traceback(server: Server, tmp_path: Path) -> None:
    single, _, key = _served(server)
    pub = tmp_path / "server.pub"
    pub.write_text(key["public_key_pem"])
    text = json.dumps(single)
    receipt = json.dumps(single["item"]["receipt"])
    # a duplicate key: one reader sees the signed verdict, another the second one
    duplicate = text.replace('"verdict": ', '"verdict": "genuine", "verdict": ', 1)
    cases = {
        "duplicate-key": duplicate.encode(),
        "nan": text.replace('"authenticity_score": ', '"authenticity_score": NaN, "x": ', 1).encode(),
        "garbage": b"\x00\xff not json",
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "no-receipt": b'{"a": 1}',
        "payload-not-object": json.dumps({"payload": [1], "signature": "AA=="}).encode(),
        "signature-not-base64": receipt.replace('"signature": "', '"signature": "!!', 1).encode(),
        "huge-int": receipt.replace('"receipt_version": 2', '"receipt_version": 1' + "0" * 400, 1).encode(),
        "surrogate": text.replace('"verdict": "', '"verdict": "\\ud800', 1).encode(),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        r = _verify(path, pub)
        assert r.returncode in (1, 2), (name, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout, (name, r.stderr)


def test_metrics_need_a_key_or_their_own_port(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    import httpx
    from serverutil import ADMIN_KEY, API_KEY, free_port, start_server, stop_server

    port = free_port()
    s = start_server(
        tiny_bundle_dir,
        tmp_path / "serve.log",
        env={
            "AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]',
            "AUTHLENS_ADMIN_KEY_HASH": sha(ADMIN_KEY),
            "AUTHLENS_METRICS_PORT": str(port),
        },
    )
    try:
        assert httpx.get(s.url + "/metrics").status_code == 401
        assert httpx.get(s.url + "/v1/model").status_code == 401
        for key in (API_KEY, ADMIN_KEY):
            assert httpx.get(s.url + "/metrics", headers={"X-API-Key": key}).status_code == 200
        side = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert side.status_code == 200 and "authlens_requests_total" in side.text
    finally:
        stop_server(s)
