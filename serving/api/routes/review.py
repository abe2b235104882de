"""The review queue (``/v1/review``): ranked suspects, item views, decisions with an audit trail,
sellers and case files. Every route takes a reviewer's own key (``reviewers`` setting); nothing
here deletes anything (there is no DELETE route).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Security
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.exc import SQLAlchemyError

from serving.api.deps import SettingsDep, _bearer, _key_header, _presented, key_matches
from serving.api.errors import APIError
from serving.api.routes.page import CSP, STATIC_DIR
from serving.review import queue as review_queue
from serving.review import sellers as review_sellers
from serving.review.app import recorder
from serving.review.casefile import build_case
from serving.review.schemas import (
    DecisionIn,
    DecisionOut,
    QueuePage,
    ReviewerOut,
    ReviewItemOut,
    SellerOut,
)
from serving.review.service import photo_path
from serving.review.store import Reviewer, ReviewError, ReviewStore
from serving.schemas import ErrorResponse, IsoDatetime

MEDIA = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heif"}


def require_reviewer(
    settings: SettingsDep,
    header: Annotated[str | None, Security(_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Reviewer:
    """The reviewer whose key was presented; 403 when the queue is off, 401 for any other key."""
    if not settings.review_enabled or not settings.reviewers:
        raise APIError(
            403,
            "review_disabled",
            "The review queue is off: set review_enabled and at least one entry in reviewers.",
        )
    key = _presented(header, bearer)
    for r in settings.reviewers:
        if key is not None and key_matches(key, [r.key_hash]):
            return Reviewer(r.name, r.role)
    raise APIError(401, "unauthorized", "A reviewer's API key is required.", {"WWW-Authenticate": "Bearer"})


ReviewerDep = Annotated[Reviewer, Depends(require_reviewer)]

router = APIRouter(
    prefix="/v1/review",
    tags=["review"],
    responses={
        401: {"model": ErrorResponse, "description": "Not a reviewer's key."},
        403: {"model": ErrorResponse, "description": "Review queue off, or a viewer deciding."},
        404: {"model": ErrorResponse, "description": "No such item or seller."},
        422: {"model": ErrorResponse, "description": "A filter, cursor or decision that is not allowed."},
        503: {"model": ErrorResponse, "description": "The review database is unreachable."},
    },
)


page_router = APIRouter(tags=["page"])


@page_router.get("/review", include_in_schema=False)
async def review_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "review.html", headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP}
    )


def _store(request: Request) -> ReviewStore:
    try:
        return recorder(request.app).store()
    except Exception as exc:
        raise APIError(
            503, "review_unavailable", f"The review database is unreachable ({type(exc).__name__})."
        ) from None


def _err(exc: ReviewError) -> APIError:
    return APIError(exc.status, exc.code, str(exc))


@contextmanager
def _db() -> Iterator[None]:
    """Store errors as API errors: the request's mistakes as 4xx, an unreachable database as 503."""
    try:
        yield
    except ReviewError as exc:
        raise _err(exc) from None
    except SQLAlchemyError as exc:
        raise APIError(
            503,
            "review_unavailable",
            f"The review database did not answer ({type(exc).__name__}); retry shortly.",
            {"Retry-After": "5"},
        ) from None


def _with_urls(item: dict[str, Any]) -> dict[str, Any]:
    for p in item["photos"]:
        p["url"] = f"/v1/review/items/{item['id']}/photos/{p['position']}" if p["stored"] else None
        p["stored"] = bool(p["stored"])
        p.pop("id", None)
        p.pop("item_id", None)
    for d in item["decisions"]:
        d.pop("item_id", None)
    return item


ItemId = Annotated[int, Path(ge=1, le=2**62, description="The review item's id.")]


@router.get("/me", response_model=ReviewerOut, summary="Who this key belongs to")
def me(reviewer: ReviewerDep) -> ReviewerOut:
    return ReviewerOut(name=reviewer.name, role=reviewer.role)  # type: ignore[arg-type]


@router.get("/queue", response_model=QueuePage, summary="Items ranked by counterfeit probability")
def get_queue(
    request: Request,
    reviewer: ReviewerDep,
    status: Annotated[str, Query(description="open, decided, any, or a decision.")] = "open",
    brand: Annotated[str | None, Query(max_length=100, description="Brand the listing claims.")] = None,
    category: Annotated[str | None, Query(max_length=100, description="Product category.")] = None,
    marketplace: Annotated[str | None, Query(max_length=100, description="Marketplace.")] = None,
    seller_id: Annotated[str | None, Query(max_length=200, description="Seller.")] = None,
    verdict: Annotated[str | None, Query(description="genuine, counterfeit or inconclusive.")] = None,
    reason: Annotated[str | None, Query(description="An inconclusive reason, e.g. reused_photo.")] = None,
    since: Annotated[IsoDatetime | None, Query(description="Scored at or after (ISO 8601).")] = None,
    until: Annotated[IsoDatetime | None, Query(description="Scored before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=review_queue.MAX_PAGE, description="Items per page.")] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the last page.")] = None,
) -> QueuePage:
    """The most suspect items first (calibrated counterfeit probability, then newest)."""
    flt = review_queue.QueueFilter(
        status=status,
        brand=brand or None,
        category=category or None,
        marketplace=marketplace or None,
        seller_id=seller_id or None,
        verdict=verdict or None,
        reason=reason or None,
        since=since,
        until=until,
    )
    try:
        flt.check()
        if cursor:
            review_queue.decode_cursor(cursor)
    except ReviewError as exc:
        raise _err(exc) from None
    with _db():
        rows, nxt = review_queue.page(_store(request), flt, limit=limit, cursor=cursor or None)
    return QueuePage.model_validate({"items": rows, "next_cursor": nxt})


@router.get(
    "/items/{item_id}", response_model=ReviewItemOut, summary="One item with photos, receipt, decisions"
)
def get_item(request: Request, reviewer: ReviewerDep, item_id: ItemId) -> ReviewItemOut:
    with _db():
        item = _store(request).item(item_id)
    return ReviewItemOut.model_validate(_with_urls(item))


@router.get(
    "/items/{item_id}/photos/{position}",
    summary="A photo's bytes",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
def get_photo(
    request: Request,
    reviewer: ReviewerDep,
    item_id: ItemId,
    position: Annotated[int, Path(ge=0, le=63, description="The photo's position in the item.")],
) -> Response:
    with _db():
        item = _store(request).item(item_id)
    photo = next((p for p in item["photos"] if p["position"] == position), None)
    if photo is None:
        raise APIError(404, "not_found", f"Item {item_id} has no photo {position}.")
    path = photo_path(recorder(request.app).photos_dir, photo["sha256"])
    if not photo["stored"] or not path.is_file():
        raise APIError(404, "not_found", f"Photo {position} of item {item_id} was not kept.")
    return Response(
        path.read_bytes(),
        media_type=MEDIA.get(str(photo["format"]), "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.post(
    "/items/{item_id}/decisions",
    response_model=DecisionOut,
    status_code=201,
    summary="Decide: confirmed counterfeit, confirmed genuine or unsure",
)
def post_decision(request: Request, reviewer: ReviewerDep, item_id: ItemId, body: DecisionIn) -> DecisionOut:
    """Record a decision; the item's previous status and note are kept with it (audit trail)."""
    if reviewer.role != "investigator":
        raise APIError(403, "forbidden", f"{reviewer.name} is a {reviewer.role}: only investigators decide.")
    with _db():
        row = _store(request).decide(item_id, body.status, body.note, reviewer=reviewer)
    row.pop("item_id", None)
    return DecisionOut.model_validate(row)


@router.get("/items/{item_id}/decisions", response_model=list[DecisionOut], summary="The audit trail")
def get_decisions(request: Request, reviewer: ReviewerDep, item_id: ItemId) -> list[DecisionOut]:
    with _db():
        item = _store(request).item(item_id)
    return [DecisionOut.model_validate(d) for d in _with_urls(item)["decisions"]]


SellerId = Annotated[str, Path(min_length=1, max_length=200, description="The seller.")]
Bucket = Annotated[str, Query(description="day, week or month.")]


def _seller(store: ReviewStore, seller_id: str, bucket: str) -> dict[str, Any]:
    with _db():
        out = review_sellers.timeline(store, seller_id, bucket=bucket)
        out["linked"] = review_sellers.linked(store, seller_id)
    return out


@router.get("/sellers/{seller_id}", response_model=SellerOut, summary="A seller over time and linked sellers")
def get_seller(
    request: Request, reviewer: ReviewerDep, seller_id: SellerId, bucket: Bucket = "day"
) -> SellerOut:
    return SellerOut.model_validate(_seller(_store(request), seller_id, bucket))


def _zip(
    request: Request, title: str, items: list[dict[str, Any]], seller: dict[str, Any] | None
) -> Response:
    signer = request.app.state.serving.signer
    from serving.receipts import public_key_pem

    data = build_case(
        title,
        items,
        recorder(request.app).photos_dir,
        public_key_pem=public_key_pem(signer.public_key),
        key_id=signer.key_id,
        seller=seller,
    )
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in title)[:80]
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'},
    )


@router.get(
    "/items/{item_id}/case",
    summary="Case file of one item (ZIP)",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def get_item_case(request: Request, reviewer: ReviewerDep, item_id: ItemId) -> Response:
    with _db():
        item = _store(request).item(item_id)
    return _zip(request, f"case-item-{item_id}", [item], None)


@router.get(
    "/sellers/{seller_id}/case",
    summary="Case file of a seller (ZIP)",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def get_seller_case(request: Request, reviewer: ReviewerDep, seller_id: SellerId) -> Response:
    store = _store(request)
    seller = _seller(store, seller_id, "day")
    with _db():
        rows, _ = review_queue.page(
            store, review_queue.QueueFilter(status="any", seller_id=seller_id), limit=200
        )
        items = [store.item(r["id"]) for r in rows]
    return _zip(request, f"case-seller-{seller_id}", items, seller)
