"""The FastAPI app factory. The bundle is loaded in ``lifespan``, never at import time.

Usage: ``authlens serve --bundle bundles/demo`` (or ``uvicorn --factory serving.main:create_app``
with ``AUTHLENS_BUNDLE`` set).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

import model
from serving.api.errors import install_error_handlers, not_ready_response
from serving.api.main import api_router
from serving.api.middleware import AccessGuard, BodyBudget, BodyLimit, PipelineGate, RequestContext
from serving.api.routes.page import STATIC_DIR
from serving.batcher import Closed
from serving.core.config import Settings, get_settings
from serving.metrics import Metrics
from serving.state import NotReady, ServingState

DOCS_ASSETS = "/docs-assets"

DESCRIPTION = """Authenticity scores and flagged features for product photos.

* `POST /v1/score`: one item, 1 to 8 photos, verdict + signed evidence receipt.
* `POST /v1/score/batch`: up to 64 images for crawlers, per-image errors, `item_id` grouping.
* `POST /v1/score/video`: a recorded live stream, scored as a background job (`GET /v1/jobs/{job_id}`):
  when a suspect item was on screen.
* Every scored photo is looked up in the reference gallery (catalogue and listing photos): a reused
  photo is `inconclusive` with `reused_photo` and does not vote. `GET /v1/gallery/clusters`: photos
  reused across listings; `/v1/admin/gallery`: manage the gallery.
* Errors are JSON `{"error": {"code", "message"}, "request_id"}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the model loads when the app starts (lifespan), not here.

    Args:
        settings: Explicit settings; default :func:`get_settings` (the environment).
    """
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServingState(settings, metrics)
        app.state.serving = state
        await state.start()
        exporter = None
        if settings.metrics_port is not None:  # Prometheus on its own port, as model servers do
            from prometheus_client import start_http_server

            exporter, _ = start_http_server(settings.metrics_port, settings.metrics_host, metrics.registry)
        try:
            yield
        finally:
            if exporter is not None:
                exporter.shutdown()
            await state.close()

    # /docs with Swagger UI served from this process (fastapi-offline ships it), not a CDN:
    # investigators' machines are often air-gapped. No /redoc: its page fetches a logo from
    # redoc's CDN whatever the options.
    app: FastAPI = FastAPIOffline(
        redoc_url=None,
        title="authlens",
        version=model.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # the default badge calls validator.swagger.io
    )
    app.state.settings = settings  # what every dependency reads (serving.api.deps.get_app_settings)
    install_error_handlers(app)
    app.add_exception_handler(NotReady, not_ready_response)
    app.add_exception_handler(Closed, not_ready_response)
    app.include_router(api_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        budget=BodyBudget(settings.max_inflight_bytes),
        idle_timeout_s=settings.body_idle_timeout_s,
        min_rate=settings.body_min_rate_bytes_s,
        grace_s=settings.body_grace_s,
        retry_after=lambda: _retry_after(app),
        on_refuse=lambda code: metrics.rejected.labels(code).inc(),
    )
    app.add_middleware(
        PipelineGate,
        paths=("/v1/score", "/v1/score/batch"),
        full=lambda: _pipeline_full(app),
        retry_after=lambda: _retry_after(app),
        on_refuse=lambda reason: metrics.rejected.labels(reason).inc(),
        max_requests=settings.concurrency(),
        wait_s=settings.admission_wait_s,
    )
    # keys and admin rules from the headers alone: nothing is read or reserved for a refused client
    app.add_middleware(AccessGuard, settings=settings)
    # CORS outside the guard and the gates, so browsers can read their refusals too
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContext, metrics=metrics)  # outermost: ids and metrics for every answer
    return app


def _retry_after(app: FastAPI) -> int:
    """Seconds a refused client should wait: the pipeline's drain estimate once serving."""
    state: ServingState | None = getattr(app.state, "serving", None)
    return state.admission.retry_after() if state is not None else 1


def _pipeline_full(app: FastAPI) -> bool:
    state: ServingState | None = getattr(app.state, "serving", None)
    return state is not None and state.admission.depth >= state.admission.capacity
