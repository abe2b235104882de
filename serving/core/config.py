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
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
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


def gallery_beside(bundle: Path | str) -> Path:
    """The default reference gallery of a bundle: ``gallery.sqlite`` in the folder that holds it."""
    return Path(bundle).resolve().parent / "gallery.sqlite"


def _check_hash(value: str, what: str) -> str:
    v = value.strip().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError(
            f"{what} must be the SHA-256 hex digest of a key (64 hex characters), not the key itself; "
            "`authlens new-api-key` prints a key and its hash."
        )
    return v


class ReviewerKey(BaseModel):
    """An investigator of the review queue: name and role, identified by their own API key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Who decides (recorded with every decision).")
    role: Literal["investigator", "viewer"] = Field(
        default="investigator", description="investigator: reads and decides; viewer: reads only."
    )
    key_hash: str = Field(
        description="SHA-256 hex digest of the reviewer's API key (`authlens new-api-key`)."
    )

    @field_validator("key_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        return _check_hash(v, "reviewers key_hash")


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
    batch_max_size: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Images per model call (run in ONNX Runtime calls of at most 8, which bounds memory).",
    )
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
    gallery_path: Path | None = Field(
        default=None,
        description=(
            "Reference gallery (SQLite) of catalogue and listing photos every scored photo is looked up "
            "in; default gallery.sqlite beside the bundle directory. Created on the first reference added."
        ),
    )
    gallery_enabled: bool = Field(default=True, description="Look scored photos up in the reference gallery.")
    gallery_record_listings: bool = Field(
        default=False,
        description=(
            "Batch calls: store photos of items (item_id = listing) that match nothing as listing "
            "references, and record matches as sightings, so a photo reused across listings is found."
        ),
    )
    gallery_widely_reused: int = Field(
        default=3,
        ge=2,
        le=1_000_000,
        description="Listings from which a matched photo is reported as widely reused.",
    )
    video_dir: Path | None = Field(
        default=None,
        description="Where video jobs keep uploads and reports (default: a temporary directory of the process).",
    )
    video_recordings_dir: Path | None = Field(
        default=None,
        description="Server-side recordings `POST /v1/score/video` may name by relative `path`; unset: uploads only.",
    )
    video_max_bytes: int = Field(
        default=1024 * 2**20,
        ge=1024,
        le=64 * 2**30,
        description="Largest recording in bytes (uploads are also bounded by max_request_bytes).",
    )
    video_max_duration_s: float = Field(
        default=4 * 3600.0, gt=0, le=48 * 3600, description="Longest recording in seconds."
    )
    video_max_pixels: int = Field(
        default=3840 * 2160, ge=64 * 64, le=7680 * 4320, description="Largest video frame in pixels."
    )
    video_sample_fps: float = Field(
        default=2.0, gt=0, le=30, description="Frames of a recording scored per second of video."
    )
    video_batch: int = Field(
        default=8, ge=1, le=64, description="Video frames handed to the model at a time."
    )
    video_max_jobs: int = Field(default=1, ge=1, le=16, description="Video jobs running at once.")
    video_max_queued: int = Field(
        default=8, ge=0, le=10_000, description="Video jobs waiting to run; one more gets 429."
    )
    video_job_ttl_s: float = Field(
        default=3600.0, gt=0, le=30 * 86400, description="How long a finished job and its report are kept."
    )
    video_job_timeout_s: float = Field(
        default=4 * 3600.0,
        gt=0,
        le=48 * 3600,
        description="A job still running after this fails (deadline_exceeded).",
    )

    review_enabled: bool = Field(
        default=False,
        description=(
            "Store every item judged by /v1/score/batch (answer, receipt, photos, listing metadata) for "
            "the review queue."
        ),
    )
    review_db_url: str | None = Field(
        default=None,
        description=(
            "Review store: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB; default review.sqlite "
            "beside the bundle directory."
        ),
    )
    review_photos_dir: Path | None = Field(
        default=None,
        description="Where stored photos go, by SHA-256; default review-photos beside the bundle.",
    )
    review_spool: Path | None = Field(
        default=None,
        description=(
            "JSON Lines file holding records the database could not take, retried every review_retry_s; "
            "default review-spool.jsonl beside the bundle."
        ),
    )
    review_retry_s: float = Field(default=30.0, gt=0, le=3600, description="How often the spool is retried.")
    reviewers: list[ReviewerKey] = Field(
        default_factory=list,
        description=(
            'Investigators, as JSON: [{"name": "ana", "role": "investigator", "key_hash": "<sha256>"}]. Their '
            "keys are also API keys (they score photos too); the review routes take only these keys."
        ),
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
        reviewer_hashes = [r.key_hash for r in self.reviewers]
        if len(set(reviewer_hashes)) != len(reviewer_hashes):
            raise ValueError("reviewers: two reviewers share a key; give each investigator their own key.")
        if self.admin_key_hash is not None and self.admin_key_hash in reviewer_hashes:
            raise ValueError("admin_key_hash must differ from every reviewer's key_hash.")
        self.api_key_hashes = [
            *self.api_key_hashes,
            *(h for h in reviewer_hashes if h not in self.api_key_hashes),
        ]
        if self.review_db_url is not None and not self.review_db_url.startswith(("sqlite:", "postgresql")):
            raise ValueError(
                f"review_db_url must start with sqlite:/// or postgresql+psycopg://, not {self.review_db_url.split(':')[0]!r}."
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

    def resolved_gallery_path(self) -> Path:
        """``gallery_path``, or ``gallery.sqlite`` beside the bundle directory."""
        return self.gallery_path or gallery_beside(self.bundle)

    def review_paths(self) -> tuple[str, Path, Path]:
        """``(database URL, photo folder, spool file)`` of the review store, defaults resolved."""
        beside = Path(self.bundle).resolve().parent
        url = self.review_db_url or f"sqlite:///{beside / 'review.sqlite'}"
        return (
            url,
            self.review_photos_dir or beside / "review-photos",
            self.review_spool or beside / "review-spool.jsonl",
        )

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
