"""Evidence receipts: Ed25519 signatures over canonical JSON (RFC 8785).

A receipt attests which photos (SHA-256 of their bytes) a given model (bundle SHA-256) judged,
with what verdict and scores, and when. Anyone holding the server's public key can check it
offline with ``authlens verify-receipt``; the key is published at ``GET /v1/receipts/public-key``.

Every id a receipt signs as the server's is made by the server (``receipt_id``, ``request_id``);
what the client named (a batch's ``item_id`` and image ids) is signed under those names, and a
client's ``X-Request-ID`` stays outside the signature, beside it in the answer. Checking an answer
(:func:`check_answer`) compares what the answer says around each receipt with what was signed, so
an edited verdict next to an intact receipt is caught; files are read as strict I-JSON.

Usage: ``authlens verify-receipt response.json --public-key receipt-key.pub``
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import uuid
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

RECEIPT_VERSION = 2
"""Version 2 adds ``receipt_id``, ``item_id`` and ``image_ids``; version 1 receipts still verify."""
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
        self,
        item: ItemResult,
        *,
        model: ModelRef,
        request_id: str,
        item_id: str | None = None,
        image_ids: list[str] | None = None,
        issued_at: datetime | None = None,
    ) -> Receipt:
        """Receipt over an item result; the result's own ``receipt`` field is not part of it.

        Args:
            item: The item result.
            model: The model that judged it.
            request_id: The server's id of the request (never the client's).
            item_id: The client's item id (batch calls), signed so the receipt names the item.
            image_ids: The client's ids of the item's photos, in ``input_sha256`` order (batch calls).
            issued_at: Signing time (default now).
        """
        when = (issued_at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        payload = {
            "receipt_version": RECEIPT_VERSION,
            "receipt_id": uuid.uuid4().hex,
            "issued_at": when,
            "request_id": request_id,
            "item_id": item_id,
            "image_ids": image_ids,
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
    except (ValueError, TypeError, OverflowError, InvalidSignature):
        raise ReceiptError(
            "Signature does not match: the receipt was altered or not signed by this key."
        ) from None
    except Exception as exc:  # rfc8785 refuses some values with its own errors
        raise ReceiptError(f"The payload cannot be put in canonical JSON ({type(exc).__name__}).") from None
    return parsed.payload


@dataclass(frozen=True)
class Found:
    """A receipt where it was found: the item result around it and the answer's context.

    Attributes:
        receipt: The receipt object.
        item: The item result holding it (``None`` for a bare receipt).
        context: ``model`` and ``request_id`` of the enclosing answer, and ``item_id`` and
            ``image_ids`` of an enclosing batch item, when present.
    """

    receipt: dict[str, Any]
    item: dict[str, Any] | None
    context: dict[str, Any]


def find_answers(document: Any) -> list[Found]:
    """Every receipt inside a receipt, a /v1/score or batch answer, or a ``score`` JSONL line,
    with what surrounds it."""
    found: list[Found] = []

    def walk(node: Any, context: dict[str, Any], parent: dict[str, Any] | None) -> None:
        if isinstance(node, dict):
            if {"payload", "signature"} <= node.keys():
                found.append(Found(node, parent, context))
                return
            ctx = dict(context)
            for key in ("model", "request_id"):
                if key in node:
                    ctx[key] = node[key]
            if "image_ids" in node and "result" in node:  # a batch item
                ctx["image_ids"] = node["image_ids"]
                ctx["item_id"] = node.get("item_id")
            for key, value in node.items():
                walk(value, ctx, node if key == "receipt" else None)
        elif isinstance(node, list):
            for value in node:
                walk(value, context, None)

    walk(document, {}, None)
    return found


def find_receipts(document: Any) -> list[dict[str, Any]]:
    """Every receipt inside a receipt, a /v1/score answer, a batch answer or a score JSONL line."""
    return [f.receipt for f in find_answers(document)]


_ITEM_FIELDS = (
    "verdict",
    "authenticity_score",
    "counterfeit_probability",
    "inconclusive_reasons",
    "images_used",
    "input_sha256",
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=0, abs_tol=0)
    return bool(a == b)


def check_answer(payload: dict[str, Any], found: Found) -> list[str]:
    """Where the answer around a receipt says something other than what was signed.

    Compares the item result (verdict, scores, reasons, photos used, input hashes, flags with
    their scores and photos), the answer's model and request id, and for a batch item its
    ``item_id`` and image ids (receipt version 2).

    Returns:
        One line per difference; empty when the answer matches its signed payload.
    """
    problems: list[str] = []
    item = found.item
    if item is not None:
        for key in _ITEM_FIELDS:
            if key in payload and not _same(item.get(key), payload[key]):
                problems.append(f"{key} is {item.get(key)!r} in the answer, {payload[key]!r} signed")
        flags = item.get("flagged_features")
        if "flagged_features" in payload:
            shown = (
                [
                    {k: f.get(k) for k in ("name", "score", "image_index")}
                    for f in flags
                    if isinstance(f, dict)
                ]
                if isinstance(flags, list)
                else flags
            )
            if shown != payload["flagged_features"]:
                problems.append("flagged_features differ from the signed ones")
    ctx = found.context
    if "model" in ctx and "model" in payload and ctx["model"] != payload["model"]:
        problems.append(f"model is {ctx['model']!r} in the answer, {payload['model']!r} signed")
    if "request_id" in ctx and "request_id" in payload and ctx["request_id"] != payload["request_id"]:
        problems.append(
            f"request_id is {ctx['request_id']!r} in the answer, {payload['request_id']!r} signed"
        )
    if "image_ids" in ctx and payload.get("receipt_version", 1) >= 2:
        for key in ("item_id", "image_ids"):
            if ctx.get(key) != payload.get(key):
                problems.append(f"{key} is {ctx.get(key)!r} in the answer, {payload.get(key)!r} signed")
    return problems
