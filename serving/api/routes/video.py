"""``POST /v1/score/video`` (a recording becomes a background job), ``GET /v1/jobs/{job_id}``
(progress, then the report) and the page at ``/video`` to upload one and jump to suspect moments.

The recording is an upload (multipart field ``file``) or, when the server has
``video_recordings_dir``, a ``path`` relative to it. It is probed (container, duration, resolution,
size) before it is accepted, so those errors come back at once; decoding and scoring run as a job.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from serving.api.deps import ApiKey, StateDep
from serving.api.errors import APIError
from serving.api.forms import FormLimits, read_form
from serving.api.routes.page import STATIC_DIR
from serving.schemas import ErrorResponse, JobAccepted, JobStatus
from serving.state import NotReady, ServingState
from serving.video.decode import VideoError, VideoTooLarge, probe
from serving.video.jobs import Job, QueueFull

router = APIRouter(tags=["video"])

# The video page plays the chosen file from a blob: URL, so media-src allows blob: (nothing else).
VIDEO_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

_VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The recording: MP4, MKV (WebM), FLV or MPEG-TS.",
                        },
                        "path": {
                            "type": "string",
                            "maxLength": 1024,
                            "description": "Instead of `file`: a recording under the server's video_recordings_dir (relative path).",
                        },
                    },
                }
            }
        },
    }
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body is not well-formed multipart/form-data."},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    413: {
        "model": ErrorResponse,
        "description": "Recording larger than video_max_bytes or the request limit.",
    },
    415: {"model": ErrorResponse, "description": "Body not multipart/form-data."},
    422: {
        "model": ErrorResponse,
        "description": "Not a recording that can be scored (unsupported_video, corrupt_video, video_too_large for "
        "duration or resolution, invalid_request).",
    },
    429: {"model": ErrorResponse, "description": "The video queue is full; retry after Retry-After seconds."},
    503: {"model": ErrorResponse, "description": "No model ready; see Retry-After."},
}


def _recording(state: ServingState, relative: str) -> Path:
    root = state.settings.video_recordings_dir
    if root is None:
        raise APIError(422, "invalid_request", "This server takes uploads only (no video_recordings_dir).")
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or not relative.strip():
        raise APIError(
            422, "invalid_request", "`path` must be relative to video_recordings_dir, without `..`."
        )
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise APIError(422, "invalid_request", f"No recording {relative!r} under video_recordings_dir.")
    return path


def _copy(upload: StarletteUpload, target: Path) -> None:
    upload.file.seek(0)
    with open(target, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


@router.post(
    "/v1/score/video",
    status_code=202,
    response_model=JobAccepted,
    responses=_ERRORS,
    dependencies=[ApiKey],
    summary="Score a recorded live stream (background job)",
    openapi_extra=_VIDEO_BODY,
)
async def score_video(request: Request, state: StateDep) -> JSONResponse:
    """Accept a recording and score it in the background: poll the returned `status_url`.

    The report lists the shots with their verdict, score, flags and the thumbnail of the most
    suspect frame, a timeline of the score over time (also as a PNG strip) and the processing speed.
    """
    try:
        state.current()
    except NotReady as exc:
        raise APIError(503, "not_ready", str(exc), {"Retry-After": "5"}) from None
    jobs = state.video_jobs
    try:
        jobs.check_room()  # before reading a large body for nothing
    except QueueFull as exc:
        raise APIError(429, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
    limit = min(state.settings.video_max_bytes, state.settings.max_request_bytes)
    form = await read_form(
        request,
        FormLimits(
            max_files=1,
            max_fields=1,
            max_field_bytes=1024,
            max_file_bytes=limit,
            parts="the recording as `file` (or a `path` under the recordings folder)",
        ),
    )
    try:
        unknown = sorted(set(form.keys()) - {"file", "path"})
        upload = form.get("file")
        path_field = form.get("path")
        if unknown:
            raise APIError(
                422, "invalid_request", f"Unknown form fields {unknown[:5]}; this route takes file or path."
            )
        if (upload is None) == (path_field is None):
            raise APIError(422, "invalid_request", "Send exactly one of `file` (an upload) or `path`.")
        if upload is not None:
            if not isinstance(upload, StarletteUpload):
                raise APIError(422, "invalid_request", "`file` must be a file part.")
            name = PurePosixPath(upload.filename or "recording").name[:200] or "recording"
            job = jobs.new_job(name)
            try:
                await run_in_threadpool(_copy, upload, job.path)
            except OSError as exc:
                _discard(job)
                raise APIError(
                    503, "storage_unavailable", f"The upload could not be stored ({exc.strerror})."
                ) from None
        else:
            if not isinstance(path_field, str):
                raise APIError(422, "invalid_request", "`path` must be a text field.")
            source = _recording(state, path_field)
            job = jobs.new_job(source.name, source)
    finally:
        await form.close()
    try:
        info = await run_in_threadpool(probe, job.path, state.video_limits)
    except VideoError as exc:
        _discard(job)
        status = 413 if isinstance(exc, VideoTooLarge) and "bytes" in exc.message else 422
        raise APIError(status, exc.code, exc.message) from None
    job.duration_s = info.duration_s
    try:
        jobs.submit(job)
    except QueueFull as exc:
        _discard(job)
        raise APIError(429, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}) from None
    url = f"/v1/jobs/{job.id}"
    body = JobAccepted(job_id=job.id, status="queued", status_url=url)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})


def _discard(job: Job) -> None:
    shutil.rmtree(job.folder, ignore_errors=True)


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobStatus,
    dependencies=[ApiKey],
    responses={
        401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
        404: {"model": ErrorResponse, "description": "No such job (never made, or expired)."},
    },
    summary="A video job's progress, and its report once done",
)
async def job_status(job_id: str, state: StateDep) -> JobStatus:
    """Poll until `status` is `done` (the report is included) or `failed` (`error` says why)."""
    job = state.video_jobs.get(job_id)
    if job is None:
        raise APIError(
            404, "job_not_found", "No such job: it was never made, or it expired (video_job_ttl_s)."
        )
    return await run_in_threadpool(state.video_jobs.status, job)


@router.get("/video", include_in_schema=False)
async def video_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "video.html", headers={"Cache-Control": "no-cache", "Content-Security-Policy": VIDEO_CSP}
    )
