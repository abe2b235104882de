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
from serving.core.config import Settings
from serving.receipts import (
    ReceiptError,
    ReceiptSigner,
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
