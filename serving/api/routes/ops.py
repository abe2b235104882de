"""``/healthz`` (alive), ``/readyz`` (model loaded, warmed, and its batcher working), ``/metrics``
(Prometheus; behind a key when keys are configured, or without one on ``metrics_port``)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.api.deps import MetricsKey, StateDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process can answer HTTP."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: a verified, warmed model is serving and its batcher works",
    responses={
        503: {"description": "Starting, stopping, or the batcher is stuck in a model call or stopped."}
    },
)
async def readyz(state: StateDep) -> JSONResponse:
    """``200`` with the bundle's SHA-256 when ready, else ``503`` with ``Retry-After`` and ``reason``
    (``not_loaded``, ``stopping``, ``batcher_stuck``, ``batcher_stopped``)."""
    problem = state.health()
    if problem is not None or state.slot is None:
        return JSONResponse(
            {"status": "not_ready", "reason": problem, "stopping": state.stopping},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "bundle_sha256": state.slot.predictor.bundle.sha256})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, dependencies=[MetricsKey])
async def metrics(state: StateDep) -> Response:
    """Requests by route and status, latencies, batch sizes, queue depth, verdicts, OOD rate."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
