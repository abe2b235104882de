"""``GET /v1/model`` (what is serving) and ``GET /v1/receipts/public-key`` (to check receipts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from model.decision import REASONS
from model.flags import FLAGS
from serving.api.deps import ApiKey, StateDep
from serving.api.errors import APIError
from serving.core.config import MAX_PHOTOS_PER_ITEM
from serving.receipts import public_key_pem
from serving.schemas import ModelRef

router = APIRouter(prefix="/v1", tags=["model"])

REASON_TEXT = {
    "low_confidence": "The score lies between the genuine and counterfeit thresholds: the model is not sure either way.",
    "out_of_distribution": "The photo is unlike anything the model was trained on (another product, a screenshot, ...).",
    "image_too_small": "The photo is too small to judge; send the original, uncropped photo.",
    "too_blurry": "The photo is too blurry to judge; retake it in focus.",
    "no_usable_image": "None of the photos could be used, for the reasons listed with it.",
}


NO_FLAGS_NOTE = "Trained without flag labels: this model raises no flags."


def flags_note(flags: Sequence[str], untrained: Sequence[str]) -> str:
    """What ``/v1/model`` and the web page say about the flags a bundle can raise."""
    if not flags:
        return NO_FLAGS_NOTE
    titles = {f.name: f.title for f in FLAGS}
    note = "This model can raise these flags: " + ", ".join(titles.get(n, n) for n in flags) + "."
    if untrained:
        never = ", ".join(titles.get(n, n) for n in untrained)
        note += f" Never raised, as its training data labelled none of them: {never}."
    return note


class FlagInfo(BaseModel):
    """One named tell the model can flag."""

    name: str = Field(description="Flag name as it appears in `flagged_features`, e.g. `stitch_irregular`.")
    title: str = Field(description="Short human-readable name.")
    description: str = Field(description="What the tell looks like on a counterfeit.")
    threshold: float = Field(
        description="Flag probability from which the flag is raised (fitted on validation)."
    )


class ModelInfo(BaseModel):
    """The bundle being served."""

    model: ModelRef = Field(description="Name, version and bundle SHA-256, as in every score response.")
    served_graph: str = Field(description="model.onnx (fp32) or the INT8 file.")
    input: dict[str, Any] = Field(description="Input size and preprocessing (bundle.json `input`).")
    decision: dict[str, Any] = Field(description="Thresholds on the counterfeit probability and per flag.")
    flags: list[FlagInfo] = Field(
        description="The flags this model reports, with their thresholds: those its training data "
        "labelled. Empty: trained without flag labels, the model raises no flags."
    )
    untrained_flags: list[str] = Field(
        description="Flags of the vocabulary this model never raises because its training data "
        "labelled none of them (bundle.json `untrained_flags`; empty for bundles before schema 4)."
    )
    flags_note: str = Field(description="In words: which flags this model can raise, or that it raises none.")
    reasons: dict[str, str] = Field(description="What each inconclusive reason means.")
    max_photos_per_item: int = Field(description="Most photos `/v1/score` takes for one item.")
    metrics: dict[str, Any] = Field(description="Evaluation summary recorded at export.")
    provenance: dict[str, Any] = Field(
        description="Where the model comes from: timm model, config and data manifest hashes, git commit, "
        "checkpoint SHA-256, creation time, library versions."
    )
    ood: dict[str, Any] = Field(
        description="Out-of-distribution check: score threshold and the quantile it was set at."
    )
    loaded_at: float = Field(description="Unix time the bundle was loaded.")
    receipt_key_id: str = Field(description="Identifier of the key signing this server's receipts.")
    receipt_key_ephemeral: bool = Field(
        description="True: the receipt key was generated at start-up and dies with the process."
    )


class PublicKey(BaseModel):
    """The public half of the receipt-signing key."""

    key_id: str = Field(description="Identifier that receipts name in `key_id`.")
    algorithm: str = Field(default="Ed25519", description="Signature algorithm.")
    public_key_pem: str = Field(description="The public key, PEM (SubjectPublicKeyInfo).")
    ephemeral: bool = Field(
        description="True: the key dies with the process; receipts cannot be checked after a restart."
    )


@router.get("/model", response_model=ModelInfo, dependencies=[ApiKey], summary="The model answering")
async def model_info(state: StateDep) -> ModelInfo:
    """Bundle metadata: name, version, SHA-256, thresholds, flags, provenance and metrics."""
    if state.slot is None:
        raise APIError(503, "not_ready", "No model is loaded yet.", {"Retry-After": "5"})
    p = state.slot.predictor
    m = p.manifest
    return ModelInfo(
        model=p.model_ref,
        served_graph=p.bundle.onnx_path(int8=p.int8).name,
        input=m.input.model_dump(mode="json"),
        decision=m.decision.model_dump(mode="json"),
        flags=[
            FlagInfo(
                name=f.name,
                title=f.title,
                description=f.description,
                threshold=m.decision.flag_thresholds[f.name],
            )
            for f in FLAGS
            if f.name in m.flags
        ],
        untrained_flags=list(m.untrained_flags),
        flags_note=flags_note(m.flags, m.untrained_flags),
        reasons={r: REASON_TEXT.get(r, r) for r in REASONS},
        max_photos_per_item=MAX_PHOTOS_PER_ITEM,
        metrics=m.metrics,
        provenance=m.provenance.model_dump(mode="json", exclude={"resolved_config"}),
        ood=m.ood.model_dump(mode="json"),
        loaded_at=state.loaded_at,
        receipt_key_id=state.signer.key_id,
        receipt_key_ephemeral=state.signer.ephemeral,
    )


@router.get("/receipts/public-key", response_model=PublicKey, summary="Public key that signs receipts")
async def public_key(state: StateDep) -> PublicKey:
    """Publish this key (or its ``key_id``) with your case files; `authlens verify-receipt` uses it."""
    return PublicKey(
        key_id=state.signer.key_id,
        public_key_pem=public_key_pem(state.signer.public_key),
        ephemeral=state.signer.ephemeral,
    )
