"""Evidence receipts: Ed25519 signatures over canonical JSON (RFC 8785).

A receipt attests which photos (SHA-256 of their bytes) a given model (bundle SHA-256) judged,
with what verdict and scores, and when. Anyone holding the server's public key can check it
offline with ``authlens verify-receipt``; the key is published at ``GET /v1/receipts/public-key``.

Usage: ``authlens verify-receipt response.json --public-key receipt-key.pub``
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from model.logs import log_event
from serving.schemas import ItemResult, ModelRef, Receipt

RECEIPT_VERSION = 1
log = logging.getLogger(__name__)


class ReceiptError(ValueError):
    """A receipt or key that cannot be used; the message names what is wrong."""


def canonical_json(payload: dict[str, Any]) -> bytes:
    """RFC 8785 (JCS) canonical bytes: sorted keys, no spaces, ECMAScript number form."""
    return rfc8785.dumps(payload)


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex characters of the SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM text."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def write_private_key(path: Path) -> Ed25519PrivateKey:
    """Create a new Ed25519 key, write it as PEM with mode 600 and its public key beside (``.pub``).

    Raises:
        ReceiptError: ``path`` already exists (keys are never overwritten).
    """
    if path.exists():
        raise ReceiptError(f"{path} already exists; refusing to overwrite a signing key.")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    path.with_name(path.name + ".pub").write_text(public_key_pem(key.public_key()), encoding="ascii")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an unencrypted PEM Ed25519 private key.

    Raises:
        ReceiptError: unreadable, encrypted, or not an Ed25519 key.
    """
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ReceiptError(f"{path}: not an unencrypted PEM private key ({exc}).") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReceiptError(f"{path}: a {type(key).__name__}; receipts need an Ed25519 key.")
    return key


def load_public_key(text: str | bytes) -> Ed25519PublicKey:
    """Parse a public key given as PEM, or as the base64 of the raw 32 bytes.

    Raises:
        ReceiptError: neither form, or not Ed25519.
    """
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise ReceiptError(f"Not a PEM public key ({exc}).") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ReceiptError(f"The public key is {type(key).__name__}; receipts are signed with Ed25519.")
        return key
    try:
        raw = base64.b64decode(data.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ReceiptError("The public key is neither PEM nor the base64 of 32 raw Ed25519 bytes.") from None


@dataclass
class ReceiptSigner:
    """Signs item results. ``ephemeral`` keys vanish with the process: receipts then cannot be
    checked after a restart, which is why the server warns loudly when it uses one."""

    private_key: Ed25519PrivateKey
    ephemeral: bool

    @classmethod
    def from_settings(cls, key_file: Path | None) -> ReceiptSigner:
        """Load the configured key, or make an ephemeral one (logged as a warning)."""
        if key_file is not None:
            return cls(load_private_key(key_file), ephemeral=False)
        signer = cls(Ed25519PrivateKey.generate(), ephemeral=True)
        log_event(
            log,
            "receipt_key_ephemeral",
            logging.WARNING,
            key_id=signer.key_id,
            message=(
                "No receipt_key_file configured: evidence receipts are signed with a key that dies with "
                "this process and cannot be verified after a restart. Create one with "
                "`authlens new-receipt-key PATH` and set AUTHLENS_RECEIPT_KEY_FILE."
            ),
        )
        return signer

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, payload: dict[str, Any]) -> Receipt:
        """Sign ``payload`` (JSON-compatible) as it is."""
        signature = self.private_key.sign(canonical_json(payload))
        return Receipt(
            payload=payload, key_id=self.key_id, signature=base64.b64encode(signature).decode("ascii")
        )

    def sign_item(
        self, item: ItemResult, *, model: ModelRef, request_id: str, issued_at: datetime | None = None
    ) -> Receipt:
        """Receipt over an item result; the result's own ``receipt`` field is not part of it."""
        when = (issued_at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        payload = {
            "receipt_version": RECEIPT_VERSION,
            "issued_at": when,
            "request_id": request_id,
            "model": model.model_dump(),
            "input_sha256": list(item.input_sha256),
            "images_used": list(item.images_used),
            "verdict": item.verdict,
            "authenticity_score": item.authenticity_score,
            "counterfeit_probability": item.counterfeit_probability,
            "inconclusive_reasons": list(item.inconclusive_reasons),
            "flagged_features": [
                {"name": f.name, "score": f.score, "image_index": f.image_index}
                for f in item.flagged_features
            ],
        }
        return self.sign(payload)


def find_receipts(document: Any) -> list[dict[str, Any]]:
    """Every receipt inside a receipt, a /v1/score answer, a batch answer or a score JSONL line."""
    found: list[dict[str, Any]] = []
    if isinstance(document, dict):
        if {"payload", "signature"} <= document.keys():
            return [document]
        for value in document.values():
            found.extend(find_receipts(value))
    elif isinstance(document, list):
        for value in document:
            found.extend(find_receipts(value))
    return found


def verify_receipt(receipt: dict[str, Any], public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Check a receipt's signature and return its payload.

    Raises:
        ReceiptError: malformed receipt, another key (``key_id`` differs), or a bad signature.
    """
    try:
        parsed = Receipt.model_validate(receipt)
    except ValueError as exc:
        raise ReceiptError(f"Not a receipt: {exc}") from None
    expected = key_id(public_key)
    if parsed.key_id != expected:
        raise ReceiptError(
            f"The receipt was signed by key {parsed.key_id}, not by the given public key {expected}."
        )
    try:
        signature = base64.b64decode(parsed.signature, validate=True)
        public_key.verify(signature, canonical_json(parsed.payload))
    except (ValueError, InvalidSignature):
        raise ReceiptError(
            "Signature does not match: the receipt was altered or not signed by this key."
        ) from None
    return parsed.payload
