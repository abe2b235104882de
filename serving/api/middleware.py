"""The server's outer layers (pure ASGI), outermost first as ``serving.main`` stacks them:

* :class:`RequestContext`: a server-generated id per request, metrics with bounded labels and
  one structured log line;
* :class:`AccessGuard`: keys and admin rules checked from the headers alone, before any body
  byte is read or any memory is reserved for it;
* :class:`PipelineGate`: scoring refused while the pipeline has no room;
* :class:`BodyLimit`: size, shared memory budget and a total deadline (minimum rate) per body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.logs import log_event
from serving.api.deps import key_matches
from serving.core.config import Settings, is_loopback
from serving.metrics import Metrics, method_label

log = logging.getLogger("authlens.access")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestContext:
    """Gives each request a server-generated id (``X-Request-ID`` in the answer, the id receipts
    sign), records a sane client ``X-Request-ID`` beside it (``X-Client-Request-ID``, the answer's
    ``client_request_id``, the log line), and counts status and latency by route template and
    standard method (invented methods and unknown paths fold into one label value each)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        client_id = given if _CLIENT_ID.match(given) else None
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_request_id"] = client_id
        status = 500
        t = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                extra = [(b"x-request-id", request_id.encode())]
                if client_id is not None:
                    extra.append((b"x-client-request-id", client_id.encode()))
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            template = _route_template(scope)
            seconds = time.perf_counter() - t
            method = method_label(scope["method"])
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template).observe(seconds)
            if template not in ("/healthz", "/readyz", "/metrics"):
                log_event(
                    log,
                    "request",
                    request_id=request_id,
                    client_request_id=client_id,
                    method=method,
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


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SIMPLE_CONTENT_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
ADMIN_PREFIX = "/v1/admin/"
OPEN_PATHS = frozenset({"/v1/receipts/public-key"})


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


def presented_key(scope: Scope) -> str | None:
    """The key in ``X-API-Key``, else in ``Authorization: Bearer``."""
    key = _header(scope, b"x-api-key")
    if key:
        return key
    auth = _header(scope, b"authorization") or ""
    scheme, _, token = auth.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _host_name(host: str) -> str:
    """``example.org`` from ``example.org:8000``, ``::1`` from ``[::1]:8000``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class AccessGuard:
    """Authorisation before work: every decision is made from the request line and headers, so a
    client without the right key, or a cross-site page, costs the server no body read, no
    multipart parsing and no share of the in-flight memory budget.

    * ``/v1/*`` (but the public key) and ``/metrics`` need an API key when keys are configured
      (``/metrics`` also takes the admin key).
    * ``/v1/admin/*`` is closed without an admin key unless the server has no key at all and
      listens on loopback (``allow_insecure`` never opens it). It refuses what a browser would
      send for another site: a ``Sec-Fetch-Site`` other than same-origin/none, an ``Origin``
      that is not this ``Host``, a ``Host`` outside ``allowed_hosts`` (DNS rebinding; on
      loopback the loopback names), and the content types a page may send without a CORS
      preflight (``text/plain``, forms, multipart), or no content type and no key header.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        if settings.allowed_hosts:
            self.hosts: frozenset[str] | None = frozenset(h.lower() for h in settings.allowed_hosts)
        else:
            self.hosts = LOOPBACK_NAMES if is_loopback(settings.host) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            refusal = None
            if path.startswith(ADMIN_PREFIX):
                refusal = self._admin(scope)
            elif self.settings.auth_enabled and (
                (path.startswith("/v1/") and path not in OPEN_PATHS) or path == "/metrics"
            ):
                refusal = self._api(scope, also_admin=path == "/metrics")
            if refusal is not None:
                await send_refusal(scope, send, refusal)
                return
        await self.app(scope, receive, send)

    def _unauthorized(self, what: str) -> BodyRefused:
        return BodyRefused(401, "unauthorized", what, {"WWW-Authenticate": "Bearer"})

    def _api(self, scope: Scope, *, also_admin: bool) -> BodyRefused | None:
        key = presented_key(scope)
        s = self.settings
        hashes = [*s.api_key_hashes, *([s.admin_key_hash] if also_admin and s.admin_key_hash else [])]
        if key is None or not key_matches(key, hashes):
            return self._unauthorized(
                "A valid API key is required in the X-API-Key header or as Authorization: Bearer."
            )
        return None

    def _admin(self, scope: Scope) -> BodyRefused | None:
        s = self.settings
        if s.admin_key_hash is None and not s.admin_open:
            return BodyRefused(
                403,
                "admin_disabled",
                "No admin key is configured (admin_key_hash): admin routes are off, as on any server "
                "with API keys or listening beyond loopback.",
            )
        refused = self._cross_site(scope)
        if refused is not None:
            return refused
        if s.admin_key_hash is not None:
            key = presented_key(scope)
            if key is None or not key_matches(key, [s.admin_key_hash]):
                return self._unauthorized("The admin key is required.")
        return None

    def _cross_site(self, scope: Scope) -> BodyRefused | None:
        def refuse(why: str) -> BodyRefused:
            return BodyRefused(403, "cross_site_refused", f"Admin requests must come from this host: {why}.")

        host = _header(scope, b"host") or ""
        if self.hosts is not None and _host_name(host) not in self.hosts:
            return refuse(f"Host {host[:100]!r} is not one of allowed_hosts {sorted(self.hosts)}")
        site = (_header(scope, b"sec-fetch-site") or "none").lower()
        if site not in ("same-origin", "none"):
            return refuse(f"Sec-Fetch-Site is {site[:40]!r}")
        origin = _header(scope, b"origin")
        if origin is not None:
            scheme, _, rest = origin.partition("://")
            if origin == "null" or scheme not in ("http", "https") or rest.lower() != host.lower():
                return refuse(f"Origin {origin[:100]!r} is not this server ({host[:100]!r})")
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if ctype in SIMPLE_CONTENT_TYPES:
            return refuse(
                f"Content-Type {ctype} is one a web page may send to any site; use application/json"
            )
        if not ctype and presented_key(scope) is None:
            return refuse("send Content-Type: application/json (or the admin key)")
        return None


class PipelineGate:
    """Admit scoring requests at the door, *before* reading their body.

    A request goes in while fewer than ``max_requests`` scoring requests are past this gate
    (reading their bodies, decoding, waiting for the model) and the pipeline has room for at least
    one more image. Otherwise it waits, first come first served, up to ``wait_s`` for room (a burst
    is absorbed instead of refused), then gets ``429 overloaded`` with ``Retry-After``. Since the
    work inside the server is bounded here, so is the latency of the requests it accepts
    (Little's law: about ``max_requests`` / throughput, plus ``wait_s``), however fast clients
    arrive, and a refusal costs no upload parsing.

    Args:
        app: The ASGI app.
        paths: The scoring routes (exact paths).
        full: Whether the pipeline is full now.
        retry_after: Seconds to put in ``Retry-After``.
        on_refuse: Metrics hook, called with the refusal reason.
        max_requests: Most scoring requests past the gate at once (``None``: no limit).
        wait_s: Longest wait at the gate for room.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: tuple[str, ...],
        full: Callable[[], bool],
        retry_after: Callable[[], int],
        on_refuse: Callable[[str], None] = lambda reason: None,
        max_requests: int | None = None,
        wait_s: float = 0.0,
    ) -> None:
        self.app = app
        self.paths = paths
        self.full = full
        self.retry_after = retry_after
        self.on_refuse = on_refuse
        self.max_requests = max_requests
        self.wait_s = wait_s
        self.active = 0  # scoring requests past the gate (only the event loop touches these)
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.max_waiters = 16 * max_requests if max_requests else 1024

    def _room(self) -> bool:
        return (self.max_requests is None or self.active < self.max_requests) and not self.full()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wait_for_room(self) -> bool:
        """Whether room came within ``wait_s`` (FIFO behind earlier waiters)."""
        if not self.waiters and self._room():
            return True
        if self.wait_s <= 0 or len(self.waiters) >= self.max_waiters:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, deadline - loop.time())
            except TimeoutError:
                pass
            finally:
                if not waiter.done():
                    waiter.cancel()
            if self._room():
                return True
            if loop.time() >= deadline:
                self._wake()  # pass the turn on: room may come for the next one
                return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths):
            await self.app(scope, receive, send)
            return
        if not await self._wait_for_room():
            seconds = self.retry_after()
            busy = self.max_requests is not None and self.active >= self.max_requests
            self.on_refuse("concurrency" if busy else "overloaded")
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
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            self._wake()


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
    * A client that stops sending its body for ``idle_timeout_s``, or sends it slower than
      ``min_rate`` bytes/s (after ``grace_s``: the body's total deadline is
      ``grace_s + size / min_rate``), gets ``408 request_timeout`` and its reservation is freed,
      so slow clients cannot hold the budget.

    Whatever the app tries to answer after a refusal is dropped.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        budget: BodyBudget | None = None,
        idle_timeout_s: float | None = None,
        min_rate: float | None = None,
        grace_s: float = 10.0,
        retry_after: Callable[[], int] = lambda: 1,
        on_refuse: Callable[[str], None] = lambda code: None,
    ) -> None:
        self.app = app
        self.on_refuse = on_refuse
        self.max_bytes = max_bytes
        self.budget = budget or BodyBudget(2**62)
        self.idle_timeout_s = idle_timeout_s
        self.min_rate = min_rate
        self.grace_s = grace_s
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
        if raw is not None and any(k == b"transfer-encoding" for k, _ in scope["headers"]):
            # the HTTP parser goes by Transfer-Encoding; a proxy in front might go by the length
            await send_refusal(
                scope,
                send,
                BodyRefused(400, "bad_request", "Send Content-Length or Transfer-Encoding, not both."),
            )
            return
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
        loop = asyncio.get_running_loop()
        began = loop.time()

        def wait_limit() -> tuple[float | None, bool]:
            """Seconds the next chunk may take, and whether the rate (not idleness) sets it."""
            idle = self.idle_timeout_s
            if self.min_rate is None:
                return idle, False
            # by now, received / min_rate seconds (plus the grace) have been earned
            paced = began + self.grace_s + received / self.min_rate - loop.time()
            return (paced, True) if idle is None or paced < idle else (idle, False)

        async def limited_receive() -> Message:
            nonlocal received, reserved, refused, body_done
            limit, paced = (None, False) if body_done else wait_limit()
            if limit is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(
                        receive(), max(0.01, limit)
                    )  # buffered data still counts
                except TimeoutError:
                    why = (
                        f"the body arrived slower than {self.min_rate:g} bytes/s (body_min_rate_bytes_s)"
                        if paced
                        else f"no part of the request body arrived for {self.idle_timeout_s:g} s"
                    )
                    refused = BodyRefused(408, "request_timeout", f"Request timeout: {why}; send it again.")
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
