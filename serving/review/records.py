"""What the store keeps of one scored item (:class:`ItemRecord`), built from a batch answer, and its
JSON form for the spool (a record that could not be stored waits there, whole)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class PhotoRecord:
    """One photo of an item: hash, where it was in the call, the gallery reference it copies."""

    position: int
    sha256: str
    client_image_id: str | None = None
    format: str | None = None
    stored: bool = False
    reference_id: int | None = None
    reference_seller_id: str | None = None


@dataclass
class ItemRecord:
    """A scored item as the review store keeps it (columns of ``review_items`` + its photos)."""

    scored_at: datetime
    request_id: str
    receipt_id: str
    item_key: str
    verdict: str
    counterfeit_probability: float
    model_sha256: str
    answer: dict[str, Any]
    receipt: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    client_id: str | None = None
    marketplace: str | None = None
    listing_url: str | None = None
    seller_id: str | None = None
    price: float | None = None
    currency: str | None = None
    title: str | None = None
    brand: str | None = None
    category: str | None = None
    crawled_at: datetime | None = None
    photos: list[PhotoRecord] = field(default_factory=list)

    @property
    def reused(self) -> bool:
        return "reused_photo" in self.reasons or any(p.reference_id is not None for p in self.photos)

    def columns(self) -> dict[str, Any]:
        """Values of the ``review_items`` row (without ``id``)."""
        row = {k: v for k, v in asdict(self).items() if k != "photos"}
        row["answer"] = json.dumps(self.answer, separators=(",", ":"))
        row["receipt"] = json.dumps(self.receipt, separators=(",", ":"))
        row["reasons"] = joined(self.reasons)
        row["flags"] = joined(self.flags)
        row["reused"] = int(self.reused)
        row["status"] = "open"
        return row

    def to_json(self) -> str:
        """One spool line."""
        d = asdict(self)
        d["scored_at"] = self.scored_at.isoformat()
        d["crawled_at"] = self.crawled_at.isoformat() if self.crawled_at else None
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> ItemRecord:
        d = json.loads(line)
        d["scored_at"] = datetime.fromisoformat(d["scored_at"])
        d["crawled_at"] = datetime.fromisoformat(d["crawled_at"]) if d.get("crawled_at") else None
        d["photos"] = [PhotoRecord(**p) for p in d.get("photos", [])]
        return cls(**d)


def joined(names: list[str]) -> str:
    """``;a;b;``: names with separators on both sides, so ``LIKE '%;a;%'`` finds one exactly."""
    return ";" + ";".join(names) + ";" if names else ""


def split_joined(text: str | None) -> list[str]:
    return [n for n in (text or "").split(";") if n]


def utc(when: datetime | None) -> datetime | None:
    """``when`` in UTC; naive values (SQLite returns them) are read as UTC."""
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
