"""The model bundle: a self-describing directory that serving loads and nothing else.

Layout::

    BUNDLE_DIR/
      bundle.json      BundleManifest (this module's schema), incl. SHA-256 of every other file
      model.onnx       uint8 NHWC pixels in; p_genuine, flag_probs, cam, flag_maps, embedding out
                       (without flag_probs and flag_maps when the model reports no flag)
      model.int8.onnx  optional, statically quantized
      ood.npz          out-of-distribution reference statistics of the embedding
      MODEL_CARD.md    intended use, data, metrics, limits, licences
      SHA256SUMS       ``sha256sum -c`` compatible list of every file, bundle.json included

The bundle's identity (``bundle_sha256``, quoted in every API answer and receipt) is the SHA-256
of ``bundle.json``'s bytes; since that file lists the checksums of all others, it pins them all.
Loading verifies schema and checksums and refuses any mismatch, naming the file:

* ``bundle.json`` carries ``content_sha256``, the digest of its own canonical content, so a hand
  edit (a threshold changed after export) is refused rather than served. This catches edits, not
  a determined forger, who can recompute it: to pin one exact model, pass ``expected_sha256``.
* Files in the directory that ``bundle.json`` does not list are never read; they are reported in
  :attr:`Bundle.unlisted_files` (and refused with ``strict=True``).
* Every listed file is read **once**: its bytes are hashed and those same bytes are what gets used
  (:attr:`Bundle.blobs` holds the graphs and any other listed file; the OOD statistics are parsed
  from theirs), so what serves is exactly what the checksums and ``bundle_sha256`` describe even if
  the directory changes while or after it is read. Only regular files are read (a FIFO or device
  named like a bundle file is refused, it could block or never end), at most
  :data:`MAX_BUNDLE_BYTES` in all.
* Export writes into a temporary sibling directory and renames it into place, and ``bundle.json``
  is written last, so an interrupted export never leaves a directory that verifies.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.flags import FLAG_INDEX, FLAG_NAMES, LABELS
from model.imaging import ResizePolicy
from model.ood import OODFileError, OODMethod, OODStats, load_ood

SCHEMA_VERSION = 4
"""Version 2 added ``content_sha256``, ``parity``, ``SHA256SUMS`` and optional export figures;
version 3 the ``knn`` OOD method; version 4 bundles that carry only their trained flags (a subset
of the vocabulary, possibly none, with ``untrained_flags`` naming the rest and no flag outputs
when there is no flag); versions 1 to 3 still load."""
MIN_SCHEMA_VERSION = 1
MANIFEST_NAME = "bundle.json"
MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
OOD_FILE = "ood.npz"
CARD_FILE = "MODEL_CARD.md"
SUMS_FILE = "SHA256SUMS"
MAX_BUNDLE_BYTES = 8 * 2**30
"""Most bytes all of a bundle's listed files may hold together (they are read into memory)."""

log = logging.getLogger(__name__)

# ONNX graph I/O names: the contract between export and serving.
INPUT_NAME = "pixels"  # (B, H, W, 3) uint8 RGB
OUTPUT_NAMES: tuple[str, ...] = (
    "p_genuine",  # (B,) calibrated probability that the item is genuine
    "flag_probs",  # (B, F) per-flag probability, F = len(flags) >= 1, flags in bundle order
    "cam",  # (B, h, w) counterfeit evidence map (class-activation map of the authenticity head)
    "flag_maps",  # (B, F, h, w) class-activation map of each flag head
    "embedding",  # (B, D) pooled features for out-of-distribution scoring
)
"""Every output, in graph order: the outputs of a bundle that reports flags."""
FLAG_OUTPUTS: tuple[str, ...] = ("flag_probs", "flag_maps")
"""The outputs a bundle without flags leaves out (a tensor with a zero-size axis does not export)."""


def output_names(has_flags: bool) -> tuple[str, ...]:
    """The graph's output names, in order: all of :data:`OUTPUT_NAMES` when the bundle reports at
    least one flag, else ``("p_genuine", "cam", "embedding")``.

    The one place that decides which outputs a graph has; export names the graph's outputs with
    it, serving and :class:`BundleManifest` check against it.
    """
    return OUTPUT_NAMES if has_flags else tuple(n for n in OUTPUT_NAMES if n not in FLAG_OUTPUTS)


def trained_flags(decision: Decision) -> tuple[str, ...]:
    """A bundle's flags: the flags ``decision`` has thresholds for, in :data:`FLAG_NAMES` order.

    Training fits a threshold only for the flags its data labelled, so these are the trained
    flags; none when the data had no flag label.

    Raises:
        ValueError: a threshold names a flag outside the vocabulary (the message lists it).
    """
    unknown = [name for name in decision.flag_thresholds if name not in FLAG_INDEX]
    if unknown:
        raise ValueError(
            f"decision.flag_thresholds names unknown flags {unknown}; known flags: {', '.join(FLAG_NAMES)}."
        )
    return tuple(name for name in FLAG_NAMES if name in decision.flag_thresholds)


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
    """Out-of-distribution test on the embedding (statistics in ``ood.npz``, see :mod:`model.ood`)."""

    method: OODMethod = Field(
        default="mahalanobis", description="knn or mahalanobis (bundles before 2026-12)."
    )
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
    checkpoint_sha256: str | None = Field(default=None, description="SHA-256 of the exported checkpoint.")
    checkpoint_epoch: int | None = Field(
        default=None, description="Training epoch the checkpoint was saved at."
    )
    opset: int | None = Field(default=None, description="ONNX opset of model.onnx.")
    exporter: str | None = Field(default=None, description="torch.onnx exporter used, e.g. 'dynamo'.")
    torch_version: str | None = None
    onnxruntime_version: str | None = Field(default=None, description="ONNX Runtime that verified parity.")


class ParityReport(_Strict):
    """How closely ONNX Runtime reproduced torch at export (``model.onnx`` vs the checkpoint)."""

    max_abs_diff: float = Field(
        ge=0, description="Largest |ORT - torch| over p_genuine and flag_probs (when the graph has it)."
    )
    tolerance: float = Field(gt=0, description="The bound export enforced on max_abs_diff.")
    images: int = Field(ge=1, description="Photos compared.")
    image_source: str = Field(description="Where they came from (manifest and split, or 'generated').")
    batch_sizes: tuple[int, ...] = Field(description="Batch sizes run through ORT (dynamic batch check).")
    output_max_abs_diff: dict[str, float] = Field(
        default_factory=dict, description="Largest |ORT - torch| of every output, for the record."
    )


class Int8Spec(_Strict):
    """The statically quantized variant, when exported with ``--int8``.

    All figures come from one export run: fp32 and INT8 on the same photos and batches.
    """

    file: str = INT8_FILE
    roc_auc_fp32: float
    roc_auc_int8: float
    speedup: float = Field(description="fp32 latency / int8 latency, measured in the same run at export.")
    calibration_images: int = Field(ge=1)
    evaluation_images: int | None = Field(
        default=None, ge=1, description="Labelled photos of the AUC figures."
    )
    evaluation_source: str | None = None
    max_auc_drop: float | None = Field(default=None, ge=0, description="Largest AUC drop export accepts.")
    auc_drop_allowed: bool = Field(
        default=False,
        description="True when the AUC dropped by more than max_auc_drop and export was forced.",
    )
    ece_fp32: float | None = None
    ece_int8: float | None = None
    max_abs_diff_p_genuine: float | None = Field(default=None, ge=0, description="Largest |int8 - fp32|.")
    mean_abs_diff_p_genuine: float | None = Field(default=None, ge=0, description="Mean |int8 - fp32|.")
    verdict_flips: int | None = Field(
        default=None, ge=0, description="Evaluation photos whose verdict differs between fp32 and INT8."
    )
    ood_flips: int | None = Field(
        default=None, ge=0, description="Photos whose out-of-distribution verdict differs from fp32."
    )
    latency_ms_fp32: float | None = Field(default=None, gt=0, description="Median per batch.")
    latency_ms_int8: float | None = Field(default=None, gt=0, description="Median per batch.")
    batch_size: int | None = Field(default=None, ge=1, description="Batch size of the latency figures.")
    size_bytes_fp32: int | None = Field(default=None, ge=1)
    size_bytes_int8: int | None = Field(default=None, ge=1)
    quant_format: str | None = Field(default=None, description="QDQ or QOperator.")
    per_channel: bool | None = None
    calibration_method: str | None = None
    excluded_nodes: tuple[str, ...] = Field(default=(), description="Nodes kept in float.")


class BundleManifest(_Strict):
    """``bundle.json``: everything serving needs to know about a model."""

    schema_version: int = Field(description="Bundle schema version; newer than this code is refused.")
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    labels: tuple[str, ...] = LABELS
    flags: tuple[str, ...] = Field(
        default=FLAG_NAMES,
        description="The flags this model reports, in model.flags.FLAG_NAMES order (the order of the "
        "flag outputs): those its training data labelled. Empty: trained without flag labels, it "
        "raises no flags.",
    )
    untrained_flags: tuple[str, ...] = Field(
        default=(),
        description="Flags of the vocabulary this model does not report because its training data "
        "labelled none of them (schema 4; empty in older bundles, which carry every flag).",
    )
    input: InputSpec
    input_name: str = INPUT_NAME
    outputs: tuple[str, ...] = Field(
        default=OUTPUT_NAMES,
        description="The graph's outputs in order: output_names(bool(flags)).",
    )
    map_size: tuple[int, int] = Field(description="(h, w) of the activation maps.")
    embedding_dim: int = Field(gt=0)
    decision: Decision
    ood: OODSpec
    metrics: dict[str, Any] = Field(default_factory=dict, description="Evaluation report summary.")
    provenance: Provenance
    int8: Int8Spec | None = None
    parity: ParityReport | None = None
    files: dict[str, str] = Field(description="SHA-256 (hex) of every other file in the bundle.")
    content_sha256: str | None = Field(
        default=None,
        description="SHA-256 of this manifest's canonical JSON without this field (see content_digest).",
    )

    @field_validator("files")
    @classmethod
    def _hex(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in v.items():
            if not _is_sha256(digest):
                raise ValueError(f"checksum of {name!r} is not a lowercase SHA-256 hex digest")
            if "/" in name or "\\" in name or name.startswith(".") or name in (MANIFEST_NAME, SUMS_FILE):
                raise ValueError(
                    f"file name {name!r} must be a plain name inside the bundle, other than "
                    f"{MANIFEST_NAME} and {SUMS_FILE}"
                )
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
        for key, names in (("flags", self.flags), ("untrained_flags", self.untrained_flags)):
            if list(names) != [n for n in FLAG_NAMES if n in names] or len(set(names)) != len(names):
                raise ValueError(
                    f"{key} {list(names)} must be distinct flags of the vocabulary in its order: "
                    f"{', '.join(FLAG_NAMES)}"
                )
        both = set(self.flags) & set(self.untrained_flags)
        if both:
            raise ValueError(f"flags {sorted(both)} are listed both as reported and as untrained")
        expected = output_names(bool(self.flags))
        if self.outputs != expected:
            what = "reports flags" if self.flags else "reports no flag"
            raise ValueError(
                f"outputs {list(self.outputs)} do not match the flags: a bundle that {what} has "
                f"outputs {list(expected)}"
            )
        return self


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk.

    Attributes:
        path: The bundle directory.
        manifest: The parsed ``bundle.json``.
        sha256: SHA-256 of ``bundle.json``'s bytes: the bundle's identity.
        ood_stats: The out-of-distribution reference.
        unlisted_files: Names in the directory that ``bundle.json`` does not list (never read).
        blobs: The verified bytes of every listed file but the OOD statistics (already parsed),
            by name: the graphs are loaded from these, never reopened by path.
    """

    path: Path
    manifest: BundleManifest
    sha256: str
    ood_stats: OODStats
    unlisted_files: tuple[str, ...] = ()
    blobs: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)

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

    def graph_bytes(self, *, int8: bool = False) -> bytes:
        """The verified bytes of the fp32 graph, or of the INT8 one (raises BundleError without one)."""
        name = self.onnx_path(int8=int8).name
        try:
            return self.blobs[name]
        except KeyError:
            raise BundleError(f"{self.path}: {name} was not read with the bundle; load it again.") from None


def _is_sha256(digest: object) -> bool:
    return isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def content_digest(data: dict[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON (sorted keys, no spaces), ``content_sha256`` left out.

    Args:
        data: The manifest as JSON-compatible data (``model_dump(mode="json")`` or parsed JSON).
    """
    body = {k: v for k, v in data.items() if k != "content_sha256"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_ood(name: str, data: bytes, method: str, embedding_dim: int) -> OODStats:
    try:
        stats = load_ood(io.BytesIO(data), method)  # type: ignore[arg-type]  # np.load takes files too
    except OODFileError as exc:
        raise BundleError(f"{name}: {exc}") from None
    if stats.dim != embedding_dim:
        raise BundleError(
            f"{name}: {method} statistics of dimension {stats.dim}, embedding_dim {embedding_dim}."
        )
    return stats


def _read_regular(path: Path, budget: int) -> bytes:
    """The bytes of a regular file of at most ``budget`` bytes, read through one descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if not path.exists():
            raise BundleError(f"{path}: listed in {MANIFEST_NAME} but missing.") from None
        raise BundleError(f"{path}: cannot be read ({exc.strerror}); bundle files are plain files.") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{path}: not a regular file; bundle files are plain files.")
        if info.st_size > budget:
            raise BundleError(
                f"{path}: {info.st_size} bytes would take the bundle past {MAX_BUNDLE_BYTES} bytes in all."
            )
        data = f.read(budget + 1)
    if len(data) > budget:
        raise BundleError(f"{path}: grew past {MAX_BUNDLE_BYTES} bytes while it was read.")
    return data


def write_bundle(
    directory: Path,
    *,
    manifest_fields: dict[str, Any],
    extra_files: tuple[str, ...] = (),
    strict: bool = True,
) -> Bundle:
    """Checksum the files already written into ``directory`` and write ``bundle.json`` last.

    ``bundle.json`` gets its ``content_sha256``; then ``SHA256SUMS`` lists every file with
    ``bundle.json``. Both are written atomically (temporary file + rename).

    Args:
        directory: Holds ``model.onnx``, ``ood.npz`` and any ``extra_files`` already.
        manifest_fields: Every :class:`BundleManifest` field except ``files``, ``schema_version``
            and ``content_sha256``.
        extra_files: Further file names to checksum (``MODEL_CARD.md``, ``model.int8.onnx`` ...).
        strict: Refuse, when loading it back, files the manifest does not list.

    Returns:
        The bundle, loaded back and verified.
    """
    names = [MODEL_FILE, manifest_fields.get("ood", {}).get("file", OOD_FILE), *extra_files]
    int8 = manifest_fields.get("int8")
    if int8:
        names.append(int8["file"] if isinstance(int8, dict) else int8.file)
    files = {name: sha256_file(directory / name) for name in dict.fromkeys(names)}
    manifest = BundleManifest.model_validate(
        {**manifest_fields, "schema_version": SCHEMA_VERSION, "files": files, "content_sha256": None}
    )
    data = manifest.model_dump(mode="json")
    try:
        data["content_sha256"] = content_digest(data)
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as exc:  # NaN or infinity somewhere, e.g. an undefined metric
        raise BundleError(f"{MANIFEST_NAME}: values must be finite JSON numbers ({exc}).") from None
    raw = text.encode("utf-8")
    _write_atomic(directory / MANIFEST_NAME, raw)
    sums = {MANIFEST_NAME: hashlib.sha256(raw).hexdigest(), **files}
    _write_atomic(
        directory / SUMS_FILE, "".join(f"{d}  {n}\n" for n, d in sorted(sums.items())).encode("utf-8")
    )
    return load_bundle(directory, strict=strict)


def rewrite_manifest(directory: str | Path, changes: dict[str, Any]) -> Bundle:
    """Change fields of a verified bundle's ``bundle.json`` and re-seal it (new identity).

    For deliberate changes that need no re-export (for example decision thresholds re-fitted on
    new validation data). Nested mappings merge key by key; the result is validated like any
    manifest and ``content_sha256`` and ``SHA256SUMS`` are recomputed.

    Args:
        directory: A bundle that verifies as it is.
        changes: Fields to set, e.g. ``{"decision": {"counterfeit_threshold": 0.7}}``.

    Returns:
        The re-sealed bundle, loaded back and verified.

    Raises:
        BundleError: the bundle does not verify, or the changed manifest violates the schema.
    """
    bundle = load_bundle(directory)

    def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in update.items():
            out[key] = (
                merge(out[key], value)
                if isinstance(value, dict) and isinstance(out.get(key), dict)
                else value
            )
        return out

    data = merge(bundle.manifest.model_dump(mode="json"), changes)
    files = data.pop("files")
    for key in ("schema_version", "content_sha256"):
        data.pop(key, None)
    try:
        BundleManifest.model_validate({**data, "schema_version": SCHEMA_VERSION, "files": files})
    except ValidationError as exc:
        raise BundleError(f"{bundle.path / MANIFEST_NAME}: the changes break the schema: {exc}") from None
    extra = tuple(n for n in files if n not in (MODEL_FILE, bundle.manifest.ood.file))
    return write_bundle(bundle.path, manifest_fields=data, extra_files=extra, strict=False)


def _read_sums(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum`` listing (``DIGEST  NAME`` or ``DIGEST *NAME`` per line)."""
    sums: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not readable ({exc}).") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else name
        if not _is_sha256(digest) or not name:
            raise BundleError(f"{path}: line {number} is not 'SHA256  NAME': {line[:80]!r}.")
        sums[name] = digest
    return sums


def load_bundle(directory: str | Path, *, strict: bool = False, expected_sha256: str | None = None) -> Bundle:
    """Load and verify a bundle.

    Args:
        directory: The bundle directory.
        strict: Also refuse files in the directory that ``bundle.json`` does not list.
        expected_sha256: When given, refuse any bundle whose identity (SHA-256 of ``bundle.json``)
            differs: pins one exact model.

    Raises:
        BundleError: missing directory or file, unreadable JSON, a schema version this code does
            not know, a schema violation, an edited ``bundle.json``, a checksum mismatch, or (with
            ``strict``) unlisted files; the message names the file and the mismatch.
    """
    path = Path(directory)
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise BundleError(f"{path}: not a directory; a bundle is a directory written by authlens export.")
    if not manifest_path.is_file():
        raise BundleError(
            f"{manifest_path}: not found; a bundle directory holds {MANIFEST_NAME} and the model."
        )
    raw = _read_regular(manifest_path, 64 * 2**20)
    sha256 = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        raise BundleError(
            f"{manifest_path}: bundle sha256 {sha256} is not the expected {expected_sha256.lower()}."
        )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise BundleError(f"{manifest_path}: expected a JSON object.")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{manifest_path}: schema_version is missing or not an integer.")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema_version {version} is newer than this authlens supports "
            f"({SCHEMA_VERSION}); upgrade authlens to serve this bundle."
        )
    if version < MIN_SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema_version {version} is not valid "
            f"(supported: {MIN_SCHEMA_VERSION} to {SCHEMA_VERSION})."
        )
    try:
        manifest = BundleManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(f"{manifest_path}: does not match the bundle schema: {problems}") from None
    if version >= 2:
        recorded = data.get("content_sha256")
        if recorded is None:
            raise BundleError(f"{manifest_path}: content_sha256 is missing (required from schema_version 2).")
        actual_content = content_digest(data)
        if recorded != actual_content:
            raise BundleError(
                f"{manifest_path}: content does not match its content_sha256 (recorded {recorded}, "
                f"found {actual_content}): the file was edited after export. Re-export the bundle."
            )
    blobs: dict[str, bytes] = {}
    budget = MAX_BUNDLE_BYTES
    for name, expected in manifest.files.items():
        file = path / name
        data = _read_regular(file, budget)  # read once: these bytes are hashed and then used
        budget -= len(data)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise BundleError(f"{file}: checksum mismatch (expected sha256 {expected}, found {actual}).")
        blobs[name] = data
    sums_path = path / SUMS_FILE
    if sums_path.is_file():
        expected_sums = {MANIFEST_NAME: sha256, **manifest.files}
        for name, digest in _read_sums(sums_path).items():
            if name not in expected_sums:
                raise BundleError(f"{sums_path}: lists {name!r}, which {MANIFEST_NAME} does not.")
            if digest != expected_sums[name]:
                raise BundleError(
                    f"{sums_path}: sha256 of {name} is {expected_sums[name]}, the listing says {digest}."
                )
    elif version >= 2:
        raise BundleError(f"{sums_path}: missing (required from schema_version 2).")
    known = {MANIFEST_NAME, SUMS_FILE, *manifest.files}
    unlisted = tuple(sorted(p.name for p in path.iterdir() if p.name not in known))
    if unlisted:
        if strict:
            raise BundleError(
                f"{path}: holds files {MANIFEST_NAME} does not list: {', '.join(unlisted)}; "
                "remove them or re-export into an empty directory."
            )
        log.warning(
            "bundle_unlisted_files",
            extra={"fields": {"path": str(path), "files": list(unlisted), "note": "never read"}},
        )
    ood_data = blobs.pop(manifest.ood.file)
    ood = _load_ood(manifest.ood.file, ood_data, manifest.ood.method, manifest.embedding_dim)
    return Bundle(
        path=path, manifest=manifest, sha256=sha256, ood_stats=ood, unlisted_files=unlisted, blobs=blobs
    )


def utc_now() -> datetime:
    """Timezone-aware now, for provenance timestamps."""
    return datetime.now(UTC)
