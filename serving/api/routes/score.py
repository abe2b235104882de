"""``POST /v1/score`` (one item, 1 to 8 photos) and ``POST /v1/score/batch`` (crawlers, up to 64).

Both routes read their bodies themselves, after the key check, within limits: multipart through
:func:`serving.api.forms.read_form` (files, fields, part and header sizes), JSON batches through
:func:`serving.ijson.read_batch_images` (strict I-JSON, stops at the first entry beyond the
limit). Once admitted, a request's photos share a deadline (``request_timeout_s``, then 503
``deadline_exceeded``), and a client that disconnects cancels its photos: those not decoded yet
never are, those queued for the model are skipped, and its admission slots are freed at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload

from model.imaging import DecodeBusyError, ImageError
from serving.api.deps import ApiKey, StateDep
from serving.api.errors import APIError, ClientGone, client_request_id_of, request_id_of
from serving.api.forms import FormLimits, read_form
from serving.batcher import DeadlineExceeded, Overloaded
from serving.core.config import MAX_PHOTOS_PER_ITEM
from serving.ijson import IJSONError, TooManyEntries, read_batch_images
from serving.predictor import Listing
from serving.review.intake import Listings, form_listings_of, record_batch
from serving.schemas import (
    BatchImage,
    BatchImageResult,
    BatchItemResult,
    BatchRequest,
    BatchResponse,
    ErrorDetail,
    ErrorResponse,
    ItemResult,
    ScoreResponse,
    Timings,
)
from serving.state import ModelSlot, NotReady, Scored, ServingState

T = TypeVar("T")
MAX_ID_CHARS = 200
MAX_TEXT_FIELD_BYTES = 4096

router = APIRouter(prefix="/v1/score", tags=["score"], dependencies=[ApiKey])

ExplainQuery = Annotated[
    bool, Query(description="Add each photo's counterfeit-evidence map as a PNG overlay (base64).")
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body is not well-formed multipart/form-data."},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    413: {"model": ErrorResponse, "description": "Request or photo larger than allowed."},
    422: {
        "model": ErrorResponse,
        "description": "Malformed request, or (single item) a photo that cannot be used.",
    },
    415: {"model": ErrorResponse, "description": "Body in another content type than the route takes."},
    429: {"model": ErrorResponse, "description": "Queue full; retry after the Retry-After header's seconds."},
    503: {
        "model": ErrorResponse,
        "description": "No model ready (starting or stopping), or the request's deadline passed; see Retry-After.",
    },
}


class FileTooLarge(ImageError):
    code = "file_too_large"


class InvalidBase64(ImageError):
    code = "invalid_base64"


def _slot(state: ServingState) -> ModelSlot:
    try:
        return state.current()
    except NotReady as exc:
        state.metrics.rejected.labels("not_ready").inc()
        raise APIError(503, "not_ready", str(exc), {"Retry-After": "5"}) from None


def _admit(state: ServingState, n: int) -> None:
    try:
        state.admission.acquire(n)
    except Overloaded as exc:
        state.metrics.rejected.labels("overloaded").inc()
        raise APIError(429, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
    state.metrics.queue_depth.set(state.admission.depth)


def _release(state: ServingState, n: int, seconds: float, *, completed: bool) -> None:
    state.admission.release(n)
    if n and completed:  # a cancelled or failed request says nothing about service time
        state.admission.observe(seconds / n)
    state.metrics.queue_depth.set(state.admission.depth)


async def _wait_disconnect(request: Request) -> None:
    """Return once the client has gone (the body has been read: only a disconnect can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; if the client disconnects first, cancel it and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        watch.cancel()
        raise
    watch.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):  # the client is gone: the outcome is moot
        await task  # let the pipeline unwind (queued decodes cancelled, model jobs skipped)
    raise ClientGone()


async def _pipeline(
    request: Request,
    state: ServingState,
    slot: ModelSlot,
    datas: list[tuple[str | None, bytes | ImageError]],
    *,
    explain: bool,
) -> list[Scored]:
    """Score admitted photos under the request's deadline, cancelled if the client leaves."""
    deadline = asyncio.get_running_loop().time() + state.settings.request_timeout_s
    try:
        return await _unless_disconnected(
            request, state.score(slot, datas, explain=explain, deadline=deadline)
        )
    except DeadlineExceeded as exc:
        state.metrics.rejected.labels("deadline").inc()
        raise APIError(
            503, "deadline_exceeded", str(exc), {"Retry-After": str(state.admission.retry_after())}
        ) from None
    except ClientGone:
        state.metrics.rejected.labels("client_disconnected").inc()
        raise


async def _read(upload: StarletteUpload, limit: int) -> bytes | ImageError:
    if upload.size is not None and upload.size > limit:
        return FileTooLarge(f"The file is {upload.size} bytes; the limit is {limit} bytes (max_file_bytes).")
    data = await upload.read()
    if len(data) > limit:
        return FileTooLarge(f"The file is {len(data)} bytes; the limit is {limit} bytes (max_file_bytes).")
    return data


def _timings(t0: float, t_pipe: float, scored: list[Scored], t_done: float) -> Timings:
    """Stage walls: decoding ends when the last photo is decoded; inference runs from then."""
    decode = max((s.decoded_after for s in scored), default=0.0)
    return Timings(
        decode_ms=round(decode * 1000, 2),
        inference_ms=round(max(0.0, t_done - t_pipe - decode) * 1000, 2),
        total_ms=round((time.perf_counter() - t0) * 1000, 2),
    )


def _item(
    state: ServingState,
    slot: ModelSlot,
    scored: list[Scored],
    request_id: str,
    *,
    item_id: str | None = None,
    image_ids: list[str] | None = None,
    seller_id: str | None = None,
) -> tuple[list, ItemResult]:
    """Per-image and item results of scored photos (all without errors), signed.

    Each photo is looked up in the reference gallery; in a batch, ``item_id`` is the listing (its
    own photos never count as reuse of each other) and, with ``gallery_record_listings``, new
    photos are stored and matches recorded as sightings.
    """
    predictor = slot.predictor
    listing = None
    if item_id is not None:
        listing = Listing(item_id, seller_id, record=state.settings.gallery_record_listings)
    outcome = predictor.outcome(
        [s.prepared for s in scored],  # type: ignore[misc]
        [s.raw for s in scored],  # type: ignore[misc]
        [s.name for s in scored],
        listing=listing,
    )
    item = outcome.item
    item.receipt = state.signer.sign_item(
        item, model=predictor.model_ref, request_id=request_id, item_id=item_id, image_ids=image_ids
    )
    m = state.metrics
    m.verdicts.labels("item", item.verdict).inc()
    for im in outcome.images:
        m.verdicts.labels("image", im.verdict).inc()
    return outcome.images, item


_SCORE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "additionalProperties": False,
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "maxItems": MAX_PHOTOS_PER_ITEM,
                            "description": "1 to 8 photos of the same item (repeat the field). JPEG, PNG, WebP or HEIC.",
                        }
                    },
                }
            }
        },
    }
}


def _uploads(form: FormData, what: str, fields: tuple[str, ...] = ("files",)) -> list[StarletteUpload]:
    unknown = sorted(set(form.keys()) - set(fields))
    if unknown:
        raise APIError(
            422,
            "invalid_request",
            f"Unknown form fields {unknown[:5]}; this route takes {', '.join(fields)}.",
        )
    files = form.getlist("files")
    uploads = [f for f in files if isinstance(f, StarletteUpload)]
    if len(uploads) != len(files) or not uploads:
        raise APIError(422, "invalid_request", f"Send {what} as file parts named `files`.")
    return uploads


@router.post(
    "",
    response_model=ScoreResponse,
    responses=_ERRORS,
    summary="Score the photos of one item",
    openapi_extra=_SCORE_BODY,
)
async def score_item(request: Request, state: StateDep, explain: ExplainQuery = False) -> ScoreResponse:
    """Judge one item from 1 to 8 photos: the item verdict, each photo's result and a signed receipt.

    The item verdict averages the logits of the usable photos (see docs/serving.md); a photo that
    is too small, too blurry or unlike the training data does not vote, and says why.
    """
    if not state.ready:  # refuse before reading the body; the slot itself is taken after reading it
        _slot(state)
    limits = FormLimits(
        max_files=MAX_PHOTOS_PER_ITEM,
        max_fields=MAX_PHOTOS_PER_ITEM,
        max_field_bytes=MAX_TEXT_FIELD_BYTES,
        max_file_bytes=state.settings.max_file_bytes,
    )
    form = await read_form(request, limits)
    try:
        files = _uploads(form, f"1 to {MAX_PHOTOS_PER_ITEM} photos")
        slot = _slot(state)  # the body is already read: no await until the slot is held
        t0 = time.perf_counter()
        _admit(state, len(files))
        completed = False
        try:
            async with slot.use():
                datas: list[tuple[str | None, bytes | ImageError]] = []
                for i, f in enumerate(files):
                    data = await _read(f, state.settings.max_file_bytes)
                    if isinstance(data, FileTooLarge):
                        raise APIError(413, data.code, f"Photo {i} ({f.filename}): {data.message}")
                    datas.append((f.filename, data))
                t_pipe = time.perf_counter()
                scored = await _pipeline(request, state, slot, datas, explain=explain)
                t_done = time.perf_counter()
                bad = [(i, s.name, s.error) for i, s in enumerate(scored) if s.error is not None]
                if bad:
                    i, name, error = bad[0]
                    if isinstance(error, DecodeBusyError):  # retryable: the decode budget was full
                        raise APIError(
                            429, "overloaded", error.message, {"Retry-After": str(error.retry_after)}
                        )
                    raise APIError(422, error.code, f"Photo {i} ({name}): {error.message}")
                # judging and signing are CPU work: off the event loop, which must stay free to
                # refuse and admit requests under overload
                images, item = await run_in_threadpool(
                    _item, state, slot, scored, request_id_of(request) or ""
                )
                completed = True
        finally:
            _release(state, len(files), time.perf_counter() - t0, completed=completed)
    finally:
        await form.close()
    return ScoreResponse(
        request_id=request_id_of(request) or "",
        client_request_id=client_request_id_of(request),
        model=slot.predictor.model_ref,
        item=item,
        images=images,
        timings=_timings(t0, t_pipe, scored, t_done),
    )


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.rsplit("/", 1)[1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline_defs(BatchRequest.model_json_schema())},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "additionalProperties": False,
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "The images (repeat the field).",
                        },
                        "ids": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Client id per file, in order (default: the file names, which must then be unique).",
                        },
                        "item_ids": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Item id per file, in order; empty string for none. Files sharing one are judged as one item (<= 8).",
                        },
                        "seller_ids": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Seller id per file, in order (empty string for none): recorded with gallery sightings.",
                        },
                        "listings": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "Listing metadata for the review queue: JSON objects with `item_id` and the fields of ListingMeta, one per item.",
                        },
                    },
                }
            },
        },
    }
}


Inputs = list[tuple[str, str | None, bytes | ImageError | StarletteUpload]]
"""``(client id, item id, the image)`` per image."""


def _json_inputs(body: bytes, limit: int, max_file_bytes: int) -> tuple[Inputs, dict[str, str], Listings]:
    """Parse and validate a JSON batch entry by entry (runs on a worker thread: large bodies);
    the inputs, the seller id of each item that names one, and the listings' metadata."""
    try:
        entries = read_batch_images(body, limit=limit)
    except TooManyEntries:
        raise APIError(422, "too_many_files", f"Send at most {limit} images per batch call.") from None
    except IJSONError as exc:
        raise APIError(422, "invalid_request", f"Invalid batch body: {exc}.") from None
    if not entries:
        raise APIError(422, "invalid_request", "Invalid batch body: `images` needs at least one image.")
    out: Inputs = []
    sellers: dict[str, str] = {}
    listings: Listings = {}
    for k, entry in enumerate(entries):
        try:
            img = BatchImage.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"images.{k}.{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}"
                for e in exc.errors()[:3]
            )
            raise APIError(422, "invalid_request", f"Invalid batch body: {problems}.") from None
        if img.item_id and img.seller_id:
            sellers.setdefault(img.item_id, img.seller_id)
        if img.listing is not None:
            listings.setdefault(img.item_id or img.id, img.listing)
        if len(img.data) > max_file_bytes * 4 // 3 + 4:
            out.append(
                (
                    img.id,
                    img.item_id,
                    FileTooLarge(f"The image is larger than {max_file_bytes} bytes (max_file_bytes)."),
                )
            )
            continue
        try:
            data: bytes | ImageError = base64.b64decode(img.data, validate=True)
        except (binascii.Error, ValueError):
            data = InvalidBase64("`data` is not valid base64 (standard alphabet).")
        out.append((img.id, img.item_id or None, data))
    return out, sellers, listings


def _check_ids(values: list[str], what: str) -> None:
    for v in values:
        if len(v) > MAX_ID_CHARS:
            raise APIError(422, "invalid_request", f"`{what}` values are at most {MAX_ID_CHARS} characters.")


async def _batch_inputs(
    request: Request, state: ServingState
) -> tuple[Inputs, FormData | None, dict[str, str], Listings]:
    """``(client id, item id, bytes or error or upload)`` per image from a JSON or multipart body,
    the form to close (multipart), the seller id of each item that names one, and listings."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    s = state.settings
    limit = s.max_batch_images
    if ctype == "application/json":
        body = await request.body()
        parsed, by_item, listings = await run_in_threadpool(_json_inputs, body, limit, s.max_file_bytes)
        return parsed, None, by_item, listings
    if ctype == "multipart/form-data":
        limits = FormLimits(
            max_files=limit,
            max_fields=2 * limit,
            max_field_bytes=MAX_TEXT_FIELD_BYTES,
            # an oversized photo is one image's error (file_too_large), not the call's: it spools to
            # disk past 1 MiB and the body as a whole is bounded by max_request_bytes
            max_file_bytes=s.max_request_bytes,
        )
        form = await read_form(request, limits)
        try:
            uploads = _uploads(form, "the images", ("files", "ids", "item_ids", "seller_ids", "listings"))
            form_listings = form_listings_of([str(v) for v in form.getlist("listings")])
            ids = [str(v) for v in form.getlist("ids")]
            item_ids = [str(v) for v in form.getlist("item_ids")]
            seller_ids = [str(v) for v in form.getlist("seller_ids")]
            _check_ids(ids, "ids")
            _check_ids(item_ids, "item_ids")
            _check_ids(seller_ids, "seller_ids")
            if seller_ids and len(seller_ids) != len(uploads):
                raise APIError(
                    422,
                    "invalid_request",
                    f"`seller_ids` has {len(seller_ids)} values for {len(uploads)} files.",
                )
            if ids and len(ids) != len(uploads):
                raise APIError(
                    422, "invalid_request", f"`ids` has {len(ids)} values for {len(uploads)} files."
                )
            if item_ids and len(item_ids) != len(uploads):
                raise APIError(
                    422, "invalid_request", f"`item_ids` has {len(item_ids)} values for {len(uploads)} files."
                )
            names = ids or [(u.filename or "")[:MAX_ID_CHARS] for u in uploads]
            if any(not n for n in names):
                raise APIError(
                    422, "invalid_request", "Every file needs a client id: send `ids` or file names."
                )
        except BaseException:
            await form.close()
            raise
        inputs: Inputs = [
            (n, (item_ids[i] or None) if item_ids else None, u)
            for i, (n, u) in enumerate(zip(names, uploads, strict=True))
        ]
        sellers: dict[str, str] = {}
        for (_, item_id, _), seller in zip(inputs, seller_ids, strict=False):
            if item_id and seller:
                sellers.setdefault(item_id, seller)
        return inputs, form, sellers, form_listings
    raise APIError(
        415,
        "unsupported_media_type",
        "Send multipart/form-data (files, ids, item_ids) or application/json (images).",
    )


@router.post(
    "/batch",
    response_model=BatchResponse,
    responses={
        **_ERRORS,
        415: {"model": ErrorResponse, "description": "Body neither multipart/form-data nor JSON."},
    },
    summary="Score up to 64 images, grouped into items by item_id",
    openapi_extra=_BATCH_BODY,
)
async def score_batch(request: Request, state: StateDep, explain: ExplainQuery = False) -> BatchResponse:
    """Score many images at once (crawlers). Each image gets a result or its own error; images
    sharing an ``item_id`` are judged as one item, and an image without one is its own item."""
    if not state.ready:  # refuse before reading the body; the slot itself is taken after reading it
        _slot(state)
    inputs, form, sellers, listings = await _batch_inputs(request, state)
    try:
        answer, datas = await _score_inputs(request, state, inputs, explain=explain, sellers=sellers)
        if state.settings.review_enabled:  # stored (or spooled) before the answer leaves
            await run_in_threadpool(record_batch, request.app, answer, datas, listings, sellers)
        return answer
    finally:
        if form is not None:
            await form.close()


async def _score_inputs(
    request: Request, state: ServingState, inputs: Inputs, *, explain: bool, sellers: dict[str, str]
) -> tuple[BatchResponse, list[tuple[str | None, bytes | ImageError]]]:
    n = len(inputs)
    limit = state.settings.max_batch_images
    if n > limit:
        raise APIError(422, "too_many_files", f"Send at most {limit} images per batch call; got {n}.")
    ids = [i for i, _, _ in inputs]
    if len(set(ids)) != n:
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise APIError(422, "duplicate_ids", f"Client ids must be unique within a call; repeated: {dupes}.")
    groups: dict[str, list[int]] = {}
    for k, (_, item_id, _) in enumerate(inputs):
        if item_id is not None:
            groups.setdefault(item_id, []).append(k)
    big = [g for g, members in groups.items() if len(members) > MAX_PHOTOS_PER_ITEM]
    if big:
        raise APIError(
            422,
            "too_many_files",
            f"An item has at most {MAX_PHOTOS_PER_ITEM} photos; item_id {big[0]!r} has {len(groups[big[0]])}.",
        )
    request_id = request_id_of(request) or ""
    # No await between taking the slot and holding it: a reload during the upload above retires
    # the slot it replaced, and a request must never start on a retired one.
    slot = _slot(state)
    t0 = time.perf_counter()
    _admit(state, n)
    completed = False
    try:
        async with slot.use():
            datas: list[tuple[str | None, bytes | ImageError]] = []
            for cid, _, src in inputs:
                if isinstance(src, StarletteUpload):
                    src = await _read(src, state.settings.max_file_bytes)
                datas.append((cid, src))
            t_pipe = time.perf_counter()
            scored = await _pipeline(request, state, slot, datas, explain=explain)
            t_done = time.perf_counter()
            busy = [s.error for s in scored if isinstance(s.error, DecodeBusyError)]
            if busy and len(busy) == n:  # nothing could be decoded for lack of room: the call is refused
                raise APIError(429, "overloaded", busy[0].message, {"Retry-After": str(busy[0].retry_after)})
            results, items = await run_in_threadpool(
                _batch_results, state, slot, inputs, scored, request_id, sellers
            )
            completed = True
    finally:
        _release(state, n, time.perf_counter() - t0, completed=completed)
    answer = BatchResponse(
        request_id=request_id,
        client_request_id=client_request_id_of(request),
        model=slot.predictor.model_ref,
        results=results,
        items=items,
        timings=_timings(t0, t_pipe, scored, t_done),
    )
    return answer, datas


def _batch_results(
    state: ServingState,
    slot: ModelSlot,
    inputs: list[tuple[str, str | None, Any]],
    scored: list[Scored],
    request_id: str,
    sellers: dict[str, str],
) -> tuple[list[BatchImageResult], list[BatchItemResult]]:
    order: list[list[int]] = []
    by_item: dict[str, list[int]] = {}
    for k, (_, item_id, _) in enumerate(inputs):
        if item_id is None:
            order.append([k])
        elif item_id in by_item:
            by_item[item_id].append(k)
        else:
            by_item[item_id] = [k]
            order.append(by_item[item_id])
    image_results: list[BatchImageResult | None] = [None] * len(inputs)
    items: list[BatchItemResult] = []
    for group in order:
        item_id = inputs[group[0]][1]
        ok = [k for k in group if scored[k].error is None]
        for k in group:
            s = scored[k]
            if s.error is not None:
                image_results[k] = BatchImageResult(
                    id=inputs[k][0],
                    item_id=item_id,
                    status="error",
                    error=ErrorDetail(code=s.error.code, message=s.error.message),
                )
        if not ok:
            items.append(
                BatchItemResult(
                    item_id=item_id,
                    image_ids=[inputs[k][0] for k in group],
                    status="error",
                    error=ErrorDetail(
                        code="no_valid_image", message="None of the item's images could be decoded."
                    ),
                )
            )
            continue
        images, item = _item(
            state,
            slot,
            [scored[k] for k in ok],
            request_id,
            item_id=item_id,
            image_ids=[inputs[k][0] for k in ok],
            seller_id=sellers.get(item_id) if item_id is not None else None,
        )
        for k, im in zip(ok, images, strict=True):
            im.index = k
            for f in im.flagged_features:
                f.image_index = k
            image_results[k] = BatchImageResult(id=inputs[k][0], item_id=item_id, status="ok", result=im)
        items.append(
            BatchItemResult(item_id=item_id, image_ids=[inputs[k][0] for k in ok], status="ok", result=item)
        )
    return [r for r in image_results if r is not None], items
