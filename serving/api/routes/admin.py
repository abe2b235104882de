"""Admin routes: ``POST /v1/admin/reload`` (swap in the bundle now in the configured directory) and
the reference gallery: ``POST /v1/admin/gallery`` (add photos), ``GET /v1/admin/gallery`` (list),
``DELETE /v1/admin/gallery/{reference_id}`` (remove)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from model.bundle import BundleError
from model.imaging import ImageError
from serving.api.deps import AdminKey, StateDep
from serving.api.errors import APIError
from serving.batcher import DeadlineExceeded, Overloaded
from serving.gallery.service import add_scored, reference_out
from serving.gallery.store import Gallery, GalleryError
from serving.predictor import Predictor
from serving.schemas import (
    ErrorDetail,
    ErrorResponse,
    GalleryAddEntry,
    GalleryAddRequest,
    GalleryAddResponse,
    GalleryAddResult,
    GalleryList,
)
from serving.state import NotReady, ReloadInProgress, Scored, ServingState

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminKey])


class ReloadResult(BaseModel):
    """What a reload swapped."""

    previous_bundle_sha256: str = Field(description="The bundle that was serving before.")
    bundle_sha256: str = Field(description="The bundle serving now.")
    changed: bool = Field(description="False when the directory held the same bundle.")


@router.post(
    "/reload",
    response_model=ReloadResult,
    summary="Reload the bundle (admin key)",
    responses={
        409: {"model": ErrorResponse, "description": "A reload is already running."},
        422: {
            "model": ErrorResponse,
            "description": "The new bundle failed verification; the old one keeps serving.",
        },
    },
)
async def reload(state: StateDep) -> ReloadResult:
    """Verify and warm the bundle in the configured directory, then swap it in atomically.

    Requests already running finish on the old model; a bundle that fails verification is
    refused and the old one keeps serving.
    """
    try:
        prev, new = await state.reload()
    except ReloadInProgress as exc:
        raise APIError(409, "reload_in_progress", str(exc)) from None
    except BundleError as exc:
        raise APIError(422, "bundle_invalid", f"The old model keeps serving. {exc}") from None
    return ReloadResult(previous_bundle_sha256=prev, bundle_sha256=new, changed=prev != new)


# --------------------------------------------------------------------------- reference gallery


def _gallery(state: ServingState) -> Gallery:
    if state.gallery is None:
        raise APIError(
            409, "gallery_disabled", "This server runs without a reference gallery (gallery_enabled)."
        )
    return state.gallery


_GALLERY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong admin key."},
    403: {
        "model": ErrorResponse,
        "description": "Admin routes are off (no admin key configured) or the request could come from another site.",
    },
    409: {
        "model": ErrorResponse,
        "description": "The server runs without a gallery (gallery_enabled false).",
    },
    503: {"model": ErrorResponse, "description": "No model ready, or the gallery file cannot be written."},
}


@router.post(
    "/gallery",
    response_model=GalleryAddResponse,
    summary="Add reference photos to the gallery (admin key)",
    responses={
        **_GALLERY_ERRORS,
        422: {"model": ErrorResponse, "description": "Malformed body."},
        429: {"model": ErrorResponse, "description": "The pipeline is full; retry after Retry-After."},
    },
)
async def gallery_add(body: GalleryAddRequest, state: StateDep) -> GalleryAddResponse:
    """Decode and embed each photo with the serving model and store it with its perceptual hashes.

    JSON only (admin routes refuse multipart, which any web page could send): photos base64. A
    photo whose exact bytes are already stored answers `exists` with that reference.
    """
    gallery = _gallery(state)
    try:
        slot = state.current()
    except NotReady as exc:
        raise APIError(503, "not_ready", str(exc), {"Retry-After": "5"}) from None
    files: list[tuple[str | None, bytes | ImageError]] = []
    for entry in body.references:
        try:
            files.append((entry.source, base64.b64decode(entry.data, validate=True)))
        except (binascii.Error, ValueError):
            files.append((entry.source, _InvalidBase64("`data` is not valid base64 (standard alphabet).")))
    n = len(files)
    try:
        state.admission.acquire(n)
    except Overloaded as exc:
        raise APIError(429, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
    try:
        async with slot.use():
            deadline = asyncio.get_running_loop().time() + state.settings.request_timeout_s
            try:
                scored = await state.score(slot, files, explain=False, deadline=deadline)
            except DeadlineExceeded as exc:
                raise APIError(503, "deadline_exceeded", str(exc), {"Retry-After": "5"}) from None
            results = await run_in_threadpool(_store, gallery, slot.predictor, body.references, scored)
    finally:
        state.admission.release(n)
    return GalleryAddResponse(results=results, total=await run_in_threadpool(len, gallery))


class _InvalidBase64(ImageError):
    code = "invalid_base64"


def _store(
    gallery: Gallery, predictor: Predictor, entries: list[GalleryAddEntry], scored: list[Scored]
) -> list[GalleryAddResult]:
    out = []
    for entry, s in zip(entries, scored, strict=True):
        if s.error is not None or s.prepared is None or s.raw is None:
            err = s.error
            out.append(
                GalleryAddResult(
                    status="error",
                    error=ErrorDetail(
                        code=err.code if err else "invalid_image", message=err.message if err else ""
                    ),
                )
            )
            continue
        try:
            ref, added = add_scored(
                gallery,
                predictor,
                s.prepared,
                s.raw,
                source=entry.source,
                kind=entry.kind,
                label=entry.label,
                listing_id=entry.listing_id,
                seller_id=entry.seller_id,
            )
        except GalleryError as exc:
            raise APIError(503, "gallery_unavailable", str(exc)) from None
        out.append(GalleryAddResult(status="added" if added else "exists", reference=reference_out(ref)))
    return out


@router.get(
    "/gallery",
    response_model=GalleryList,
    summary="List gallery references (admin key)",
    responses=_GALLERY_ERRORS,
)
async def gallery_list(
    state: StateDep,
    kind: Annotated[Literal["catalogue", "listing"] | None, Query(description="Only this kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most references returned.")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="References skipped (newest first).")] = 0,
) -> GalleryList:
    """References, newest first, and how many there are."""
    gallery = _gallery(state)
    refs = await run_in_threadpool(gallery.references, kind=kind, limit=limit, offset=offset)
    return GalleryList(
        references=[reference_out(r) for r in refs], total=await run_in_threadpool(len, gallery)
    )


class GalleryRemoved(BaseModel):
    """What a removal did."""

    reference_id: int = Field(description="The reference removed.")
    removed: bool = Field(description="Always true (an unknown id is 404).")


@router.delete(
    "/gallery/{reference_id}",
    response_model=GalleryRemoved,
    summary="Remove a gallery reference (admin key)",
    responses={**_GALLERY_ERRORS, 404: {"model": ErrorResponse, "description": "No such reference."}},
)
async def gallery_remove(reference_id: int, state: StateDep) -> GalleryRemoved:
    """Delete a reference with its hashes, embedding and sightings."""
    gallery = _gallery(state)
    try:
        gone = await run_in_threadpool(gallery.remove, reference_id)
    except GalleryError as exc:
        raise APIError(503, "gallery_unavailable", str(exc)) from None
    if not gone:
        raise APIError(404, "reference_not_found", f"No gallery reference {reference_id}.")
    return GalleryRemoved(reference_id=reference_id, removed=True)
