"""``GET /v1/gallery/clusters``: photos reused across listings, for crawler pipelines.

Gallery management (add, list, remove) is admin: ``serving/api/routes/admin.py``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from serving.api.deps import ApiKey, StateDep
from serving.api.errors import APIError
from serving.gallery.service import cluster_out
from serving.schemas import ErrorResponse, ReuseClusters

router = APIRouter(prefix="/v1/gallery", tags=["gallery"], dependencies=[ApiKey])


@router.get(
    "/clusters",
    response_model=ReuseClusters,
    summary="Photos seen in several listings",
    responses={
        401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
        409: {
            "model": ErrorResponse,
            "description": "The server runs without a gallery (gallery_enabled false).",
        },
    },
)
async def clusters(
    state: StateDep,
    min_listings: Annotated[
        int, Query(ge=2, le=1_000_000, description="Least number of distinct listings a photo was seen in.")
    ] = 2,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most clusters returned.")] = 100,
) -> ReuseClusters:
    """Reference photos with the listings and sellers they were seen in, most listings first.

    Sightings are recorded by batch calls with ``item_id`` (the listing) when the server records
    listings (gallery_record_listings), see docs/reuse.md.
    """
    gallery = state.gallery
    if gallery is None:
        raise APIError(409, "gallery_disabled", "This server runs without a reference gallery.")
    found = await run_in_threadpool(gallery.clusters, min_listings=min_listings, limit=limit)
    return ReuseClusters(clusters=[cluster_out(c) for c in found])
