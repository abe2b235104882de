"""``POST /v1/admin/reload``: swap in the bundle now in the configured directory."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from model.bundle import BundleError
from serving.api.deps import AdminKey, StateDep
from serving.api.errors import APIError
from serving.schemas import ErrorResponse
from serving.state import ReloadInProgress

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
