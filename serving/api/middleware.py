"""Request ids, per-request metrics and one structured log line per request (pure ASGI)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.logs import log_event
from serving.metrics import Metrics

log = logging.getLogger("authlens.access")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestContext:
    """Gives each request an id (a sane client ``X-Request-ID`` is kept), echoes it in the
    response headers, and records status and latency by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _CLIENT_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        t = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            template = _route_template(scope)
            seconds = time.perf_counter() - t
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(seconds)
            if template not in ("/healthz", "/readyz", "/metrics"):
                log_event(
                    log,
                    "request",
                    request_id=request_id,
                    method=scope["method"],
                    route=template,
                    status=status,
                    ms=round(seconds * 1000, 1),
                )


def _route_template(scope: Scope) -> str:
    """The route template (``/v1/score``, not a raw path), also for requests a middleware refused
    before routing (the API's paths have no parameters, so such a path is its own template)."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", None) or "unmatched"
    openapi = getattr(scope.get("app"), "openapi", None)
    paths = openapi()["paths"] if openapi is not None else {}  # FastAPI caches the schema
    return scope["path"] if scope["path"] in paths else "unmatched"


class BodyRefused(StarletteHTTPException):
    """Raised from ``receive`` to stop reading a body; :class:`BodyLimit` answers for the app."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=code, headers=headers)
        self.code = code
        self.message = message
        self.reason = reason or code  # label of authlens_rejected_total


async def send_refusal(scope: Scope, send: Send, exc: BodyRefused) -> None:
    """Answer with the JSON error shape and close the connection (the body may be unread)."""
    request_id = scope.get("state", {}).get("request_id")
    body = json.dumps(
        {"error": {"code": exc.code, "message": exc.message}, "request_id": request_id}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PipelineGate:
    """Refuse scoring requests *before* reading their body while the pipeline has no room for
    even one more image: under overload a refusal then costs no upload parsing, which keeps the
    event loop free for the requests already admitted.

    Args:
        app: The ASGI app.
        paths: The scoring routes (exact paths).
        full: Whether the pipeline is full now.
        retry_after: Seconds to put in ``Retry-After``.
        on_refuse: Metrics hook, called with the refusal reason.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: tuple[str, ...],
        full: Callable[[], bool],
        retry_after: Callable[[], int],
        on_refuse: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.app = app
        self.paths = paths
        self.full = full
        self.retry_after = retry_after
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in self.paths
            and self.full()
        ):
            seconds = self.retry_after()
            self.on_refuse("overloaded")
            await send_refusal(
                scope,
                send,
                BodyRefused(
                    429,
                    "overloaded",
                    f"The server is at capacity; retry in {seconds} s.",
                    {"Retry-After": str(seconds)},
                ),
            )
            return
        await self.app(scope, receive, send)


class BodyBudget:
    """Bytes of request bodies held by the requests in flight, summed over all of them.

    Each request reserves its declared ``Content-Length`` before its body is read (a chunked body
    reserves as it arrives) and keeps the reservation until its answer is sent, because the app
    holds the bytes (and their base64 decoding) until then. Only the event loop touches it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0

    def reserve(self, n: int) -> bool:
        """Take ``n`` bytes if they fit; ``False`` (nothing taken) otherwise."""
        if n and self.used + n > self.capacity:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)


class BodyLimit:
    """Bound request bodies while they are read, not after: size, shared memory and pace.

    * A body over ``max_bytes`` gets ``413 request_too_large``: refused before reading when its
      ``Content-Length`` says so, else at the first chunk past the limit.
    * Bodies of all requests in flight share ``budget`` bytes; a request that does not fit gets
      ``429 overloaded`` with ``Retry-After`` before its body is read, so concurrent uploads
      cannot exhaust memory however many clients send at once.
    * A client that stops sending its body for ``idle_timeout_s`` gets ``408 request_timeout``
      and its reservation is freed.

    Whatever the app tries to answer after a refusal is dropped.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        budget: BodyBudget | None = None,
        idle_timeout_s: float | None = None,
        retry_after: Callable[[], int] = lambda: 1,
        on_refuse: Callable[[str], None] = lambda code: None,
    ) -> None:
        self.app = app
        self.on_refuse = on_refuse
        self.max_bytes = max_bytes
        self.budget = budget or BodyBudget(2**62)
        self.idle_timeout_s = idle_timeout_s
        self.retry_after = retry_after

    async def _refuse(self, scope: Scope, send: Send, exc: BodyRefused) -> None:
        self.on_refuse(exc.reason)
        await send_refusal(scope, send, exc)

    def _too_large(self) -> BodyRefused:
        return BodyRefused(
            413,
            "request_too_large",
            f"The request body is larger than the server accepts ({self.max_bytes} bytes, max_request_bytes).",
        )

    def _overloaded(self) -> BodyRefused:
        seconds = self.retry_after()
        return BodyRefused(
            429,
            "overloaded",
            f"The server is receiving as much request data as it holds at once; retry in {seconds} s.",
            {"Retry-After": str(seconds)},
            reason="inflight_bytes",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        declared = int(raw) if raw is not None and raw.isdigit() else None
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send, self._too_large())
            return
        reserved = declared or 0
        if not self.budget.reserve(reserved):
            await self._refuse(scope, send, self._overloaded())
            return
        received = 0
        refused: BodyRefused | None = None
        body_done = declared == 0 or scope["method"] in ("GET", "HEAD")
        started = False

        async def limited_receive() -> Message:
            nonlocal received, reserved, refused, body_done
            if body_done or self.idle_timeout_s is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.idle_timeout_s)
                except TimeoutError:
                    refused = BodyRefused(
                        408,
                        "request_timeout",
                        f"No part of the request body arrived for {self.idle_timeout_s:g} s; send it again.",
                    )
                    raise refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    refused = self._too_large()
                    raise refused
                if received > reserved:  # chunked, or more than declared: reserve as it arrives
                    if not self.budget.reserve(received - reserved):
                        refused = self._overloaded()
                        raise refused
                    reserved = received
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            try:
                await self.app(scope, limited_receive, guarded_send)
            except Exception:
                if refused is None:
                    raise
            if refused is not None and not started:
                await self._refuse(scope, send, refused)
        finally:
            self.budget.release(reserved)
