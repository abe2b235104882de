"""The model bundle: a self-describing directory that serving loads and nothing else.

Layout::

    BUNDLE_DIR/
      bundle.json      BundleManifest (this module's schema), incl. SHA-256 of every other file
      model.onnx       uint8 NHWC pixels in; p_genuine, flag_probs, cam, flag_maps, embedding out
      model.int8.onnx  optional, statically quantized
      ood.npz          out-of-distribution reference statistics of the embedding
      MODEL_CARD.md    intended use, data, metrics, limits, licences

The bundle's identity (``bundle_sha256``, quoted in every API answer and receipt) is the SHA-256
of ``bundle.json``'s bytes; since that file lists the checksums of all others, it pins them all.
Loading verifies schema and checksums and refuses any mismatch, naming the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.flags import FLAG_NAMES, LABELS
from model.imaging import ResizePolicy

SCHEMA_VERSION = 1
MANIFEST_NAME = "bundle.json"
MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OOD_FILE = "ood.npz"
CARD_FILE = "MODEL_CARD.md"

# ONNX graph I/O names: the contract between export and serving.
INPUT_NAME = "pixels"  # (B, H, W, 3) uint8 RGB
OUTPUT_NAMES: tuple[str, ...] = (
    "p_genuine",  # (B,) calibrated probability that the item is genuine
    "flag_probs",  # (B, F) per-flag probability, F = len(flags)
    "cam",  # (B, h, w) counterfeit evidence map (class-activation map of the authenticity head)
    "flag_maps",  # (B, F, h, w) class-activation map of each flag head
    "embedding",  # (B, D) pooled features for out-of-distribution scoring
)


class BundleError(Exception):
    """A bundle that must not be served; the message names the file and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What the graph's input is and how a photo becomes it (see :mod:`model.imaging`)."""

    height: int = Field(gt=0, description="Model input height in pixels.")
    width: int = Field(gt=0, description="Model input width in pixels.")
    resize: ResizePolicy = Field(description="How a photo is resized to the input: stretch or letterbox.")
    draft_size: int = Field(gt=0, description="JPEGs are decoded at reduced scale down to this shorter side.")
    layout: Literal["NHWC"] = "NHWC"
    dtype: Literal["uint8"] = "uint8"
    color: Literal["RGB"] = "RGB"
    mean: tuple[float, float, float] = Field(description="Normalisation mean, applied inside the graph.")
    std: tuple[float, float, float] = Field(description="Normalisation std, applied inside the graph.")


class Decision(_Strict):
    """How scores become a verdict (see :mod:`model.decision`).

    All thresholds are on the calibrated counterfeit probability ``1 - p_genuine``.
    """

    temperature: float = Field(
        gt=0, description="Temperature applied to the authenticity logit (in the graph)."
    )
    counterfeit_threshold: float = Field(
        ge=0, le=1, description="At or above: counterfeit. Chosen for the max false-accusation rate."
    )
    genuine_threshold: float = Field(
        ge=0, le=1, description="At or below: genuine. Between the two thresholds: inconclusive."
    )
    max_false_accusation_rate: float = Field(
        ge=0, le=1, description="Target share of genuine items called counterfeit, on validation."
    )
    max_miss_rate: float = Field(
        ge=0, le=1, description="Target share of counterfeits called genuine, on validation."
    )
    flag_thresholds: dict[str, float] = Field(
        description="Per-flag probability at or above which a flag is raised."
    )
    min_image_side: int = Field(
        default=128, ge=1, description="Photos with a shorter side below this are unusable."
    )
    min_sharpness: float = Field(
        default=0.0, ge=0, description="Laplacian variance below which a photo is too blurry."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Decision:
        if self.genuine_threshold > self.counterfeit_threshold:
            raise ValueError(
                f"genuine_threshold {self.genuine_threshold} must not exceed "
                f"counterfeit_threshold {self.counterfeit_threshold}"
            )
        return self


class OODSpec(_Strict):
    """Out-of-distribution test on the embedding (statistics in ``ood.npz``)."""

    method: Literal["mahalanobis"] = "mahalanobis"
    file: str = OOD_FILE
    threshold: float = Field(description="Scores above this are outside what the model knows.")
    quantile: float = Field(gt=0, le=1, description="Training-score quantile the threshold was set at.")


class Provenance(_Strict):
    """Where the model came from; enough to reproduce or audit it."""

    timm_model: str
    config_hash: str
    data_manifest_hash: str
    git_commit: str
    created_at: datetime
    authlens_version: str
    training_images: int = Field(ge=0)
    resolved_config: dict[str, Any] = Field(default_factory=dict)


class Int8Spec(_Strict):
    """The statically quantized variant, when exported with ``--int8``."""

    file: str = INT8_FILE
    roc_auc_fp32: float
    roc_auc_int8: float
    speedup: float = Field(description="fp32 latency / int8 latency, measured in the same run at export.")
    calibration_images: int = Field(ge=1)


class BundleManifest(_Strict):
    """``bundle.json``: everything serving needs to know about a model."""

    schema_version: int = Field(description="Bundle schema version; newer than this code is refused.")
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    labels: tuple[str, ...] = LABELS
    flags: tuple[str, ...] = FLAG_NAMES
    input: InputSpec
    input_name: str = INPUT_NAME
    outputs: tuple[str, ...] = OUTPUT_NAMES
    map_size: tuple[int, int] = Field(description="(h, w) of the activation maps.")
    embedding_dim: int = Field(gt=0)
    decision: Decision
    ood: OODSpec
    metrics: dict[str, Any] = Field(default_factory=dict, description="Evaluation report summary.")
    provenance: Provenance
    int8: Int8Spec | None = None
    files: dict[str, str] = Field(description="SHA-256 (hex) of every other file in the bundle.")

    @field_validator("files")
    @classmethod
    def _hex(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in v.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"checksum of {name!r} is not a lowercase SHA-256 hex digest")
            if "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"file name {name!r} must be a plain name inside the bundle")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> BundleManifest:
        if MODEL_FILE not in self.files:
            raise ValueError(f"files must list {MODEL_FILE}")
        if self.ood.file not in self.files:
            raise ValueError(f"files must list the OOD statistics file {self.ood.file}")
        if self.int8 is not None and self.int8.file not in self.files:
            raise ValueError(f"files must list the INT8 model {self.int8.file}")
        unknown = set(self.decision.flag_thresholds) - set(self.flags)
        if unknown or len(self.decision.flag_thresholds) != len(self.flags):
            raise ValueError(
                f"decision.flag_thresholds must have exactly one entry per flag {list(self.flags)}"
            )
        return self


@dataclass(frozen=True)
class OODStats:
    """Class-conditional Gaussian of the embedding with a shared covariance (Mahalanobis)."""

    means: np.ndarray  # (C, D)
    precision: np.ndarray  # (D, D), inverse of the shared covariance

    def score(self, embedding: np.ndarray) -> np.ndarray:
        """Minimum Mahalanobis distance over classes; ``(B, D) -> (B,)``, larger = more unusual."""
        e = np.asarray(embedding, dtype=np.float64)
        d = e[:, None, :] - self.means[None, :, :].astype(np.float64)  # (B, C, D)
        m = np.einsum("bcd,de,bce->bc", d, self.precision.astype(np.float64), d)
        return np.sqrt(np.maximum(m.min(axis=1), 0.0))


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: BundleManifest
    sha256: str
    ood_stats: OODStats

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def onnx_path(self, *, int8: bool = False) -> Path:
        """Path of the fp32 graph, or the INT8 one when asked for and present."""
        if int8:
            if self.manifest.int8 is None:
                raise BundleError(f"{self.path}: this bundle has no INT8 model; export it with --int8.")
            return self.path / self.manifest.int8.file
        return self.path / MODEL_FILE


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_ood_stats(path: Path, stats: OODStats) -> None:
    """Write OOD statistics as float32 ``.npz`` (no pickles: loading them is safe)."""
    with open(path, "wb") as f:
        np.savez(f, means=stats.means.astype(np.float32), precision=stats.precision.astype(np.float32))


def _load_ood(path: Path, embedding_dim: int) -> OODStats:
    try:
        with np.load(path, allow_pickle=False) as z:
            means, precision = z["means"], z["precision"]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{path.name}: not readable OOD statistics ({exc}).") from None
    if (
        means.ndim != 2
        or means.shape[1] != embedding_dim
        or precision.shape != (embedding_dim, embedding_dim)
    ):
        raise BundleError(
            f"{path.name}: shapes means {means.shape}, precision {precision.shape} do not match "
            f"embedding_dim {embedding_dim}."
        )
    return OODStats(means=means, precision=precision)


def write_bundle(
    directory: Path,
    *,
    manifest_fields: dict[str, Any],
    extra_files: tuple[str, ...] = (),
) -> Bundle:
    """Checksum the files already written into ``directory`` and write ``bundle.json`` last.

    Args:
        directory: Holds ``model.onnx``, ``ood.npz`` and any ``extra_files`` already.
        manifest_fields: Every :class:`BundleManifest` field except ``files`` and ``schema_version``.
        extra_files: Further file names to checksum (``MODEL_CARD.md``, ``model.int8.onnx`` ...).

    Returns:
        The bundle, loaded back and verified.
    """
    names = [MODEL_FILE, manifest_fields.get("ood", {}).get("file", OOD_FILE), *extra_files]
    int8 = manifest_fields.get("int8")
    if int8:
        names.append(int8["file"] if isinstance(int8, dict) else int8.file)
    files = {name: sha256_file(directory / name) for name in dict.fromkeys(names)}
    manifest = BundleManifest.model_validate(
        {**manifest_fields, "schema_version": SCHEMA_VERSION, "files": files}
    )
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return load_bundle(directory)


def load_bundle(directory: str | Path) -> Bundle:
    """Load and verify a bundle.

    Raises:
        BundleError: missing directory or file, unreadable JSON, a schema version this code does
            not know, a schema violation, or a checksum mismatch; the message names the file.
    """
    path = Path(directory)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(
            f"{manifest_path}: not found; a bundle directory holds {MANIFEST_NAME} and the model."
        )
    raw = manifest_path.read_bytes()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise BundleError(f"{manifest_path}: expected a JSON object.")
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"{manifest_path}: schema_version is missing or not an integer.")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema_version {version} is newer than this authlens supports "
            f"({SCHEMA_VERSION}); upgrade authlens to serve this bundle."
        )
    if version < 1:
        raise BundleError(f"{manifest_path}: schema_version {version} is not valid.")
    try:
        manifest = BundleManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(f"{manifest_path}: does not match the bundle schema: {problems}") from None
    for name, expected in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file}: listed in {MANIFEST_NAME} but missing.")
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError(f"{file}: checksum mismatch (expected sha256 {expected}, found {actual}).")
    ood = _load_ood(path / manifest.ood.file, manifest.embedding_dim)
    return Bundle(path=path, manifest=manifest, sha256=hashlib.sha256(raw).hexdigest(), ood_stats=ood)


def utc_now() -> datetime:
    """Timezone-aware now, for provenance timestamps."""
    return datetime.now(UTC)
