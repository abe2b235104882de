"""Serving settings: typed, read from ``AUTHLENS_*`` environment variables, unsafe values refused.

Every field can be set as ``AUTHLENS_<FIELD>`` (lists as JSON, e.g.
``AUTHLENS_API_KEY_HASHES='["<sha256 hex>"]'``); ``authlens serve`` options override them.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.imaging import DEFAULT_DECODE_BUDGET_BYTES, DEFAULT_DECODE_WAIT_S, DEFAULT_MAX_PIXELS

MAX_PHOTOS_PER_ITEM = 8
MAX_PIXELS_CEILING = 100_000_000


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``localhost``, 127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_hash(value: str, what: str) -> str:
    v = value.strip().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError(
            f"{what} must be the SHA-256 hex digest of a key (64 hex characters), not the key itself; "
            "`authlens new-api-key` prints a key and its hash."
        )
    return v


class Settings(BaseSettings):
    """Everything ``authlens serve`` can be told. The bundle itself says how to score."""

    model_config = SettingsConfigDict(env_prefix="AUTHLENS_", extra="ignore", validate_default=True)

    bundle: Path = Field(
        description="Model directory to serve; `POST /v1/admin/reload` re-reads the same directory."
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    allow_insecure: bool = Field(
        default=False, description="Allow a non-loopback address with no API keys configured."
    )
    api_key_hashes: list[str] = Field(
        default_factory=list,
        description="SHA-256 hex digests of the accepted API keys. Empty: no key needed (loopback only).",
    )
    admin_key_hash: str | None = Field(
        default=None, description="SHA-256 hex digest of the admin key for /v1/admin/*."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    max_file_bytes: int = Field(
        default=25 * 2**20, ge=1024, le=200 * 2**20, description="Largest accepted photo file."
    )
    max_request_bytes: int = Field(
        default=100 * 2**20, ge=1024, le=1024 * 2**20, description="Largest accepted request body."
    )
    max_inflight_bytes: int = Field(
        default=512 * 2**20,
        ge=1024,
        le=64 * 2**30,
        description=(
            "Request-body bytes held by all requests in flight together; a request that does not fit "
            "gets 429 before its body is read (JSON batches cost about 3x this in memory)."
        ),
    )
    body_idle_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="A client that sends no part of its request body for this long gets 408.",
    )
    body_min_rate_bytes_s: float = Field(
        default=32 * 1024,
        ge=1,
        le=2**30,
        description=(
            "Slowest accepted upload: a body must have arrived at this rate (after body_grace_s), "
            "so its total deadline is body_grace_s + size / rate; a slower client gets 408."
        ),
    )
    body_grace_s: float = Field(
        default=10.0, gt=0, le=3600, description="Time any body has before body_min_rate_bytes_s applies."
    )
    request_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Deadline of an admitted request's photos (decoding and the model queue); 503 after it.",
    )
    reload_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Deadline for loading and warming a bundle (start and reload).",
    )
    batcher_stall_s: float = Field(
        default=30.0, gt=0, le=3600, description="A model call running longer than this fails /readyz."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Also serve /metrics without a key on this port, bound to metrics_host.",
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address of the metrics port.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host header names admin routes accept (DNS rebinding); default: the loopback names when "
            "listening on loopback, any name otherwise (the admin key is then required)."
        ),
    )
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        le=MAX_PIXELS_CEILING,
        description="Largest photo in pixels, read from the header before decoding.",
    )
    decode_budget_bytes: int = Field(
        default=DEFAULT_DECODE_BUDGET_BYTES,
        ge=2**20,
        le=64 * 2**30,
        description=(
            "Bytes of decoding (pixels and decoder buffers, known from each header before decoding) "
            "all requests may hold at once; a photo waits decode_wait_s for room, then gets 429."
        ),
    )
    decode_wait_s: float = Field(
        default=DEFAULT_DECODE_WAIT_S, ge=0, le=600, description="Longest wait for room in the decode budget."
    )
    max_batch_images: int = Field(default=64, ge=1, le=256, description="Images per /v1/score/batch call.")
    batch_max_size: int = Field(default=16, ge=1, le=256, description="Images per ONNX Runtime call.")
    batch_max_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="How long the first image of a batch waits for company."
    )
    queue_size: int = Field(
        default=128,
        ge=1,
        le=100_000,
        description="Images admitted (decoding or waiting for the model) before new requests get 429.",
    )
    max_concurrent_requests: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description=(
            "Scoring requests the server works on at once (reading bodies, decoding, waiting for the "
            "model); the next one gets 429 before its body is read, which bounds the latency of the "
            "requests it accepts under overload. 0 = 4 per CPU core."
        ),
    )
    admission_wait_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a scoring request may wait at the door for room before it gets 429.",
    )
    decode_workers: int = Field(default=0, ge=0, le=64, description="Decoding threads; 0 = one per CPU core.")
    ort_threads: int = Field(
        default=0, ge=0, le=64, description="ONNX Runtime intra-op threads; 0 = one per CPU core."
    )
    int8: bool = Field(default=False, description="Serve the bundle's INT8 model (refused if it has none).")
    receipt_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) signing evidence receipts; unset: an ephemeral key.",
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, le=600, description="How long shutdown waits for in-flight requests."
    )

    @field_validator("api_key_hashes")
    @classmethod
    def _api_hashes(cls, v: list[str]) -> list[str]:
        return [_check_hash(h, "api_key_hashes entries") for h in v]

    @field_validator("admin_key_hash")
    @classmethod
    def _admin_hash(cls, v: str | None) -> str | None:
        return None if v in (None, "") else _check_hash(v, "admin_key_hash")

    @field_validator("receipt_key_file")
    @classmethod
    def _key_file(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        if not v.is_file():
            raise ValueError(f"receipt_key_file {v} does not exist; `authlens new-receipt-key` writes one.")
        mode = v.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(
                f"receipt_key_file {v} is readable by other users (mode {oct(mode & 0o777)}); chmod 600 it."
            )
        return v

    @model_validator(mode="after")
    def _safe(self) -> Settings:
        if not self.api_key_hashes and not self.allow_insecure and not is_loopback(self.host):
            raise ValueError(
                f"Refusing to listen on {self.host} with no API keys: set api_key_hashes "
                "(AUTHLENS_API_KEY_HASHES), listen on 127.0.0.1, or pass --allow-insecure."
            )
        if self.admin_key_hash is not None and self.admin_key_hash in self.api_key_hashes:
            raise ValueError("admin_key_hash must differ from every API key hash: use a separate admin key.")
        if "*" in self.cors_origins and not self.allow_insecure:
            raise ValueError(
                "cors_origins '*' lets any web page call the API; list origins or pass --allow-insecure."
            )
        if self.queue_size < self.max_batch_images:
            raise ValueError(
                f"queue_size {self.queue_size} must be at least max_batch_images {self.max_batch_images}, "
                "or full batch calls could never be admitted."
            )
        if self.max_inflight_bytes < self.max_request_bytes:
            raise ValueError(
                f"max_inflight_bytes {self.max_inflight_bytes} must be at least max_request_bytes "
                f"{self.max_request_bytes}, or the largest request could never be admitted."
            )
        if self.max_file_bytes > self.max_request_bytes:
            raise ValueError(
                f"max_file_bytes {self.max_file_bytes} must not exceed max_request_bytes {self.max_request_bytes}."
            )
        return self

    @property
    def auth_enabled(self) -> bool:
        """Whether API keys are required."""
        return bool(self.api_key_hashes)

    @property
    def admin_open(self) -> bool:
        """Whether admin routes answer without a key: only with no key at all, on loopback
        (``allow_insecure`` never opens them beyond it)."""
        return self.admin_key_hash is None and not self.auth_enabled and is_loopback(self.host)

    def concurrency(self) -> int:
        """``max_concurrent_requests`` with 0 resolved to 4 per CPU core."""
        return self.max_concurrent_requests or 4 * (os.cpu_count() or 1)

    def threads(self) -> tuple[int, int]:
        """``(decode_workers, ort_threads)`` with 0 resolved to the CPU count."""
        cpus = os.cpu_count() or 1
        return self.decode_workers or cpus, self.ort_threads or cpus


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once (tests override this dependency)."""
    return Settings()  # type: ignore[call-arg]  # bundle comes from AUTHLENS_BUNDLE
