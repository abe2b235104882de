"""Response and request shapes of the review API (``/v1/review``); every field has a description."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["open", "confirmed_counterfeit", "confirmed_genuine", "unsure"]
Decision = Literal["confirmed_counterfeit", "confirmed_genuine", "unsure"]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReviewerOut(_Shape):
    """Who the presented key belongs to."""

    name: str = Field(description="The reviewer's name, recorded with every decision.")
    role: Literal["investigator", "viewer"] = Field(description="investigator: decides; viewer: reads only.")


class QueueEntry(_Shape):
    """One item in the queue."""

    id: int = Field(description="The review item's id.")
    scored_at: datetime = Field(description="When the item was scored (UTC).")
    item_key: str = Field(description="The crawler's item_id (or the image id of a lone image).")
    marketplace: str | None = Field(description="Marketplace the listing is on.")
    listing_url: str | None = Field(description="The listing's URL.")
    seller_id: str | None = Field(description="The listing's seller.")
    title: str | None = Field(description="The listing's title.")
    brand: str | None = Field(description="Brand the listing claims.")
    category: str | None = Field(description="Product category.")
    price: float | None = Field(description="Listed price.")
    currency: str | None = Field(description="ISO 4217 currency of the price.")
    verdict: str = Field(description="The model's verdict: genuine, counterfeit or inconclusive.")
    counterfeit_probability: float = Field(
        description="Calibrated counterfeit probability: the queue's order."
    )
    reasons: list[str] = Field(
        description="Inconclusive reasons of the item and its photos (e.g. reused_photo)."
    )
    flags: list[str] = Field(description="Flagged features (tells) raised.")
    status: Status = Field(description="open, or the latest decision.")
    decided_by: str | None = Field(description="Reviewer of the latest decision.")


class QueuePage(_Shape):
    """A page of the queue, most suspect first."""

    items: list[QueueEntry] = Field(description="The page's items.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ReviewPhoto(_Shape):
    """A photo of an item."""

    position: int = Field(description="Position in the item (the answer's image_index).")
    sha256: str = Field(description="SHA-256 of the photo's bytes.")
    client_image_id: str | None = Field(description="The crawler's id of the image.")
    format: str | None = Field(description="JPEG, PNG, WEBP or HEIF.")
    stored: bool = Field(description="Whether the bytes are kept (then `url` serves them).")
    url: str | None = Field(description="Where the photo's bytes are served (with a reviewer key).")
    reference_id: int | None = Field(description="Reference-gallery photo it copies, if any.")
    reference_seller_id: str | None = Field(description="Seller of the listing the gallery saw it in first.")


class DecisionOut(_Shape):
    """One decision; the audit trail is all of them, oldest first."""

    id: int = Field(description="Decision id.")
    status: Decision = Field(description="What was decided.")
    note: str = Field(description="The reviewer's note.")
    reviewer: str = Field(description="Who decided.")
    role: str = Field(description="Their role when deciding.")
    decided_at: datetime = Field(description="When (UTC).")
    previous_status: Status = Field(description="The item's status before this decision.")
    previous_note: str | None = Field(description="The note of the decision this one replaced.")


class DecisionIn(_Shape):
    """A reviewer's decision on an item."""

    status: Decision = Field(description="confirmed_counterfeit, confirmed_genuine or unsure.")
    note: str = Field(default="", max_length=4000, description="Why (kept with the decision).")


class ReviewItemOut(QueueEntry):
    """An item with everything known about it."""

    request_id: str = Field(description="The server's id of the scoring request.")
    receipt_id: str = Field(description="The receipt's id (signed in its payload).")
    reused: bool = Field(description="Whether a photo copies a reference-gallery photo.")
    client_id: str | None = Field(description="The crawler that sent it.")
    crawled_at: datetime | None = Field(description="When the crawler fetched the listing.")
    decided_at: datetime | None = Field(description="When the latest decision was made.")
    model_sha256: str = Field(description="Bundle SHA-256 of the model that judged it.")
    answer: dict[str, Any] = Field(description="The batch answer for this item (item, its photos' results).")
    receipt: dict[str, Any] = Field(description="The item's signed evidence receipt.")
    photos: list[ReviewPhoto] = Field(description="The item's photos.")
    decisions: list[DecisionOut] = Field(description="Every decision on it, oldest first.")


class SellerPeriod(_Shape):
    """Counts of one period."""

    period: str = Field(description="Day (YYYY-MM-DD), ISO week (YYYY-Www) or month (YYYY-MM).")
    listings: int = Field(description="Listings scored.")
    suspect: int = Field(description="Of which the model said counterfeit.")
    confirmed_counterfeit: int = Field(description="Of which a reviewer confirmed counterfeit.")
    confirmed_genuine: int = Field(description="Of which a reviewer confirmed genuine.")


class LinkedSeller(_Shape):
    """Another seller sharing photos with this one."""

    seller_id: str = Field(description="The other seller.")
    shared_photos: int = Field(description="Photos (or gallery references) both used.")
    via: list[str] = Field(description="same_photo (identical bytes) and/or gallery (reuse match).")


class SellerOut(_Shape):
    """A seller over time and the sellers it shares photos with."""

    seller_id: str = Field(description="The seller.")
    bucket: str = Field(description="day, week or month.")
    totals: dict[str, int] = Field(description="Counts over all periods.")
    series: list[SellerPeriod] = Field(description="Counts per period, oldest first.")
    linked: list[LinkedSeller] = Field(description="Sellers sharing photos, most shared first.")
