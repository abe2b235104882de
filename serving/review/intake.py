"""What ``/v1/score/batch`` hands to the review queue: listing metadata from multipart bodies, and
recording a judged batch (``review_enabled``). The store is imported only when recording."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from model.imaging import ImageError
from serving.api.errors import APIError
from serving.ijson import IJSONError
from serving.ijson import loads as ijson_loads
from serving.schemas import BatchResponse, ListingMeta

log = logging.getLogger(__name__)

Listings = dict[str, ListingMeta]
"""Listing metadata by item key: the ``item_id``, or the image id of an image sent without one."""


def form_listings_of(values: list[str]) -> Listings:
    """Multipart ``listings`` fields: each a JSON object with ``item_id`` and listing metadata.

    Raises:
        APIError: 422 naming the value and the field that is wrong.
    """
    out: Listings = {}
    for k, text in enumerate(values):
        try:
            entry = ijson_loads(text)
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("item_id"), str)
                or not entry["item_id"]
            ):
                raise ValueError("needs a non-empty string `item_id`")
            item_id = entry.pop("item_id")
            out.setdefault(item_id, ListingMeta.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise APIError(422, "invalid_request", f"`listings` value {k}: {problems}.") from None
        except (IJSONError, ValueError) as exc:
            raise APIError(
                422, "invalid_request", f"`listings` value {k} is not a listing object: {exc}."
            ) from None
    return out


def record_batch(
    app: Any,
    answer: BatchResponse,
    datas: list[tuple[str | None, bytes | ImageError]],
    listings: Listings,
    sellers: dict[str, str],
) -> None:
    """Keep a batch's judged items for the review queue; never fails the call (runs off the loop)."""
    from serving.review.app import recorder
    from serving.review.service import photo_bytes, records_from_batch

    photos = photo_bytes(datas)
    try:
        records = records_from_batch(answer, photos, listings, sellers)
    except Exception:  # a bug here must not cost the crawler its answer; logged with its traceback
        log.exception("review_record_failed request_id=%s", answer.request_id)
        return
    recorder(app).record(records, photos)  # stores, or spools what the database refuses
