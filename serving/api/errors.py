"""Every error leaves as JSON ``{"error": {"code", "message"}, "request_id"}``; never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "overloaded",
    503: "not_ready",
}


class APIError(Exception):
    """An error for the client, raised by routes and dependencies.

    Args:
        status: HTTP status.
        code: Stable machine-readable code.
        message: What was wrong and what is allowed.
        headers: Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class ClientGone(Exception):
    """The client disconnected before its answer; its work was cancelled."""


CLIENT_CLOSED = 499  # nginx's "client closed request": logged and counted, never seen by anyone


def request_id_of(request: Request) -> str | None:
    """The server's id of the request."""
    return request.scope.get("state", {}).get("request_id")


def client_request_id_of(request: Request) -> str | None:
    """The client's own ``X-Request-ID``, when it sent a sane one."""
    return request.scope.get("state", {}).get("client_request_id")


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error shape."""
    return JSONResponse(
        {"error": {"code": code, "message": message}, "request_id": request_id_of(request)},
        status_code=status,
        headers=headers,
    )


async def not_ready_response(request: Request, exc: Exception) -> JSONResponse:
    """``503 not_ready``: no model can take the request (starting, stopping or being replaced)."""
    return error_response(request, 503, "not_ready", str(exc), {"Retry-After": "5"})


def _allowed_methods(request: Request) -> list[str]:
    """The methods of every route whose path matches the request's (several routes may share one)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to the JSON error shape."""

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 413:
            message = "The request body is larger than the server accepts (max_request_bytes)."
        elif exc.status_code == 400 and "parsing the body" in message:
            message = "The request body could not be parsed as the declared content type."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = ", ".join(_allowed_methods(request))
            message = f"{request.method[:16]} is not allowed here; allowed: {headers['Allow']}."
        return error_response(request, exc.status_code, code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or 'request'}: {e.get('msg', 'invalid')}"
            for e in exc.errors()[:5]
        )
        return error_response(request, 422, "invalid_request", f"Invalid request: {problems}.")

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, CLIENT_CLOSED, "client_disconnected", "The client went away.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", exc_info=exc, extra={"fields": {"request_id": request_id_of(request)}})
        return error_response(
            request, 500, "internal_error", "Internal error; quote the request_id when reporting it."
        )
