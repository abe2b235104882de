"""Case files: one item or one seller as a ZIP an investigator can hand over.

Layout::

    summary.html                 the case at a glance (verdicts, listing links, decisions, photos)
    case.json                    what the case holds, when it was made, the receipt key id, file hashes
    receipt-key.pub              the server's public key (compare its key_id with GET /v1/receipts/public-key)
    items/<id>/answer.json       the answer as the crawler got it (with the signed receipt)
    items/<id>/listing.json      listing metadata
    items/<id>/decisions.json    every decision, oldest first
    photos/<sha256>.<ext>        the photos, named by the hash the receipt signs
    seller.json                  (seller cases) counts over time and linked sellers

``authlens verify-receipt case.zip --public-key KEY`` checks every receipt in it offline, and that
each photo's bytes hash to what its receipt signs.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.review.service import photo_path

EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic"}
MAX_CASE_ITEMS = 500


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, default=str, ensure_ascii=False).encode("utf-8")


def photo_name(photo: dict[str, Any]) -> str:
    return f"photos/{photo['sha256']}.{EXT.get(str(photo.get('format')), 'bin')}"


def _summary(title: str, items: list[dict[str, Any]], seller: dict[str, Any] | None) -> bytes:
    e = html.escape
    rows = []
    for it in items:
        link = (
            f'<a href="{e(it["listing_url"])}">{e(it["listing_url"])}</a>' if it.get("listing_url") else "-"
        )
        last = it["decisions"][-1] if it["decisions"] else None
        decided = (
            f"{e(last['status'])} by {e(last['reviewer'])} ({e(str(last['decided_at']))}): {e(last['note'])}"
            if last
            else "open"
        )
        imgs = "".join(
            f'<img src="{e(photo_name(p))}" alt="photo {p["position"]}" height="120">'
            for p in it["photos"]
            if p.get("stored")
        )
        rows.append(
            f"<tr><td>{it['id']}</td><td>{e(it.get('title') or it['item_key'])}</td>"
            f"<td>{e(it.get('seller_id') or '-')}</td><td>{e(it['verdict'])}</td>"
            f"<td>{it['counterfeit_probability']:.3f}</td><td>{link}</td><td>{decided}</td><td>{imgs}</td></tr>"
        )
    seller_html = ""
    if seller is not None:
        t = seller["totals"]
        links = ", ".join(f"{e(x['seller_id'])} ({x['shared_photos']})" for x in seller["linked"]) or "none"
        seller_html = (
            f"<p>Listings {t['listings']}, suspect {t['suspect']}, confirmed counterfeit "
            f"{t['confirmed_counterfeit']}, confirmed genuine {t['confirmed_genuine']}. "
            f"Sellers sharing photos: {links}.</p>"
        )
    doc = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title></head>'
        f"<body><h1>{e(title)}</h1><p>Made {datetime.now(UTC).isoformat(timespec='seconds')}. Receipts: "
        "<code>authlens verify-receipt THIS.zip --public-key receipt-key.pub</code>.</p>"
        f"{seller_html}<table border=1 cellpadding=4><tr><th>item</th><th>listing</th><th>seller</th>"
        "<th>verdict</th><th>p(counterfeit)</th><th>link</th><th>decision</th><th>photos</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    return doc.encode("utf-8")


def build_case(
    title: str,
    items: list[dict[str, Any]],
    photos_dir: Path,
    *,
    public_key_pem: str | None,
    key_id: str | None,
    seller: dict[str, Any] | None = None,
) -> bytes:
    """The ZIP's bytes for ``items`` (as :meth:`ReviewStore.item` returns them)."""
    files: dict[str, bytes] = {}
    for it in items[:MAX_CASE_ITEMS]:
        base = f"items/{it['id']}"
        files[f"{base}/answer.json"] = _json(it["answer"])
        listing_keys = [
            "item_key",
            "client_id",
            "marketplace",
            "listing_url",
            "seller_id",
            "title",
            "brand",
            "category",
            "price",
            "currency",
            "crawled_at",
            "scored_at",
            "request_id",
            "model_sha256",
            "status",
        ]
        files[f"{base}/listing.json"] = _json({k: it.get(k) for k in listing_keys})
        files[f"{base}/decisions.json"] = _json(it["decisions"])
        for p in it["photos"]:
            path = photo_path(photos_dir, p["sha256"])
            if p.get("stored") and path.is_file():
                files[photo_name(p)] = path.read_bytes()
            else:
                p["stored"] = False
    if seller is not None:
        files["seller.json"] = _json(seller)
    if public_key_pem:
        files["receipt-key.pub"] = public_key_pem.encode("ascii")
    files["summary.html"] = _summary(title, items[:MAX_CASE_ITEMS], seller)
    manifest = {
        "title": title,
        "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "receipt_key_id": key_id,
        "items": [it["id"] for it in items[:MAX_CASE_ITEMS]],
        "truncated": len(items) > MAX_CASE_ITEMS,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("case.json", _json(manifest))
        for name, data in sorted(files.items()):
            z.writestr(name, data)
    return buf.getvalue()


class CaseError(ValueError):
    """A ZIP that is not a case file."""


def read_case(path: Path) -> tuple[list[Any], str | None, list[str]]:
    """The answers of a case file, its public key (PEM, if included) and the problems with its
    photos (a photo whose bytes do not hash to its name, which is what receipts sign)."""
    from serving.ijson import IJSONError, loads

    docs: list[Any] = []
    problems: list[str] = []
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "case.json" not in names:
                raise CaseError(f"{path}: a ZIP without case.json is not a case file.")
            for name in names:
                if name.startswith("items/") and name.endswith("/answer.json"):
                    try:
                        docs.append(loads(z.read(name)))
                    except IJSONError as exc:
                        problems.append(f"{name}: not strict JSON ({exc})")
                elif name.startswith("photos/"):
                    digest = hashlib.sha256(z.read(name)).hexdigest()
                    if Path(name).stem != digest:
                        problems.append(f"{name}: its bytes hash to {digest[:16]}…, not to its name")
            pem = z.read("receipt-key.pub").decode("ascii") if "receipt-key.pub" in names else None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"{path}: cannot read the case file ({exc}).") from None
    return docs, pem, problems
