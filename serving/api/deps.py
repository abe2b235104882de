"""Dependencies as ``Annotated`` aliases: settings, server state, API and admin keys.

:class:`serving.api.middleware.AccessGuard` makes the same decisions before a body is read;
these keep them in the OpenAPI schema (security schemes) and hold for any route however mounted.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.api.errors import APIError
from serving.core.config import Settings
from serving.state import ServingState


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (``create_app`` puts them on ``app.state``).

    Read from the app rather than through a dependency override: FastAPI re-analyses an
    overridden dependency's signature on every request, which cost about 2 ms of event-loop
    time per scoring request.
    """
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key (or use Authorization: Bearer)."
)
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token.")


def get_state(request: Request) -> ServingState:
    return request.app.state.serving


StateDep = Annotated[ServingState, Depends(get_state)]


def key_matches(key: str, hashes: list[str]) -> bool:
    """Compare the key's SHA-256 with every stored hash in constant time (no early exit)."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    found = False
    for h in hashes:
        found |= hmac.compare_digest(digest, h)
    return found


def _presented(header: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    if header:
        return header
    return bearer.credentials if bearer is not None else None


def require_api_key(
    settings: SettingsDep,
    header: Annotated[str | None, Security(_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """Pass when no keys are configured, or when the request carries a valid API key."""
    if not settings.auth_enabled:
        return
    key = _presented(header, bearer)
    if key is None or not key_matches(key, settings.api_key_hashes):
        raise APIError(
            401,
            "unauthorized",
            "A valid API key is required in the X-API-Key header or as Authorization: Bearer.",
            {"WWW-Authenticate": "Bearer"},
        )


def require_metrics_key(
    settings: SettingsDep,
    header: Annotated[str | None, Security(_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """``/metrics`` takes an API key or the admin key when keys are configured."""
    if not settings.auth_enabled:
        return
    key = _presented(header, bearer)
    hashes = [*settings.api_key_hashes, *([settings.admin_key_hash] if settings.admin_key_hash else [])]
    if key is None or not key_matches(key, hashes):
        raise APIError(
            401, "unauthorized", "A valid key is required for /metrics.", {"WWW-Authenticate": "Bearer"}
        )


def require_admin_key(
    settings: SettingsDep,
    header: Annotated[str | None, Security(_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """Admin routes need the admin key; without one they are open only on a keyless loopback server."""
    if settings.admin_key_hash is None:
        if not settings.admin_open:
            raise APIError(
                403, "admin_disabled", "No admin key is configured (admin_key_hash); admin routes are off."
            )
        return
    key = _presented(header, bearer)
    if key is None or not key_matches(key, [settings.admin_key_hash]):
        raise APIError(401, "unauthorized", "The admin key is required.", {"WWW-Authenticate": "Bearer"})


ApiKey = Depends(require_api_key)
AdminKey = Depends(require_admin_key)
MetricsKey = Depends(require_metrics_key)
