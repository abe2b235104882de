"""Public response shapes, shared by the HTTP API and ``authlens score`` (one predictor, two doors).

Field descriptions here are what ``/docs`` shows. Probabilities are rounded to 6 decimals;
verdicts are decided on the unrounded values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["genuine", "counterfeit", "inconclusive"]


class _Public(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Public):
    """Which model answered."""

    name: str = Field(description="Bundle name.")
    version: str = Field(description="Bundle version.")
    bundle_sha256: str = Field(description="SHA-256 of the bundle's bundle.json; pins every model file.")


class Box(_Public):
    """A rectangle in the original photo's pixels (EXIF orientation applied), ``x1``/``y1`` exclusive."""

    x0: int = Field(description="Left edge.")
    y0: int = Field(description="Top edge.")
    x1: int = Field(description="Right edge (exclusive).")
    y1: int = Field(description="Bottom edge (exclusive).")


class FlaggedFeature(_Public):
    """A counterfeit tell the model raised."""

    name: str = Field(description="Stable flag identifier, e.g. `stitch_irregular`.")
    title: str = Field(description="Human title of the flag.")
    score: float = Field(description="Probability of the tell (0..1).")
    threshold: float = Field(description="The bundle's threshold at or above which the flag is raised.")
    image_index: int = Field(description="Index of the photo (in request order) where it is strongest.")
    box: Box = Field(description="Where on that photo, in its original pixel coordinates.")


class Explanation(_Public):
    """The counterfeit-evidence map of one photo (only with ``explain=true``)."""

    overlay_png_base64: str = Field(
        description=(
            "RGBA PNG, same aspect ratio as the oriented photo: transparent where the model saw no "
            "counterfeit evidence, yellow to red where it saw the most (relative within this photo). "
            "Stretch it over the photo to overlay."
        )
    )
    preview_jpeg_base64: str = Field(
        description="The decoded, oriented photo downscaled to the overlay's size (for formats a browser cannot show)."
    )
    width: int = Field(description="Overlay width in pixels.")
    height: int = Field(description="Overlay height in pixels.")


class ImageResult(_Public):
    """One photo's result."""

    index: int = Field(description="Position of the photo in the request.")
    filename: str | None = Field(default=None, description="File name as sent (informational only).")
    sha256: str = Field(description="SHA-256 of the photo's bytes as received.")
    bytes: int = Field(description="Size of the photo in bytes.")
    format: str = Field(description="Container sniffed from the bytes: JPEG, PNG, WEBP or HEIF.")
    width: int = Field(description="Original width in pixels, EXIF orientation applied.")
    height: int = Field(description="Original height in pixels, EXIF orientation applied.")
    verdict: Verdict = Field(description="This photo's verdict alone.")
    authenticity_score: float = Field(description="Calibrated probability that the item is genuine.")
    counterfeit_probability: float = Field(description="1 - authenticity_score.")
    usable: bool = Field(description="Whether the photo counts towards the item verdict.")
    inconclusive_reasons: list[str] = Field(
        description="Why the verdict is inconclusive (empty otherwise): low_confidence, out_of_distribution, image_too_small, too_blurry."
    )
    flagged_features: list[FlaggedFeature] = Field(
        description="Raised flags, strongest first (usable photos only)."
    )
    flag_scores: dict[str, float] = Field(
        description="Probability of every flag the model reports (see /v1/model), raised or not; "
        "empty for a model trained without flag labels."
    )
    ood_score: float = Field(
        description="Distance from the training data (Mahalanobis); above the bundle threshold is out of distribution."
    )
    sharpness: float = Field(description="Laplacian variance of the model input; low means blurry.")
    explanation: Explanation | None = Field(default=None, description="Present with explain=true.")


class Receipt(_Public):
    """Evidence receipt: an Ed25519 signature over the RFC 8785 canonical JSON of ``payload``."""

    payload: dict[str, Any] = Field(
        description="What is attested: receipt version, server-made receipt_id and request_id, issue time, "
        "the client's item_id and image ids (batch calls), model, input SHA-256s, verdict, scores, reasons, flags."
    )
    algorithm: Literal["Ed25519"] = Field(default="Ed25519", description="Signature algorithm.")
    key_id: str = Field(description="First 16 hex characters of the SHA-256 of the raw public key.")
    signature: str = Field(description="Base64 (standard alphabet) Ed25519 signature.")


class ItemResult(_Public):
    """The item's result: all usable photos combined (see docs/serving.md)."""

    verdict: Verdict = Field(description="genuine | counterfeit | inconclusive.")
    authenticity_score: float = Field(description="Calibrated probability that the item is genuine.")
    counterfeit_probability: float = Field(description="1 - authenticity_score.")
    inconclusive_reasons: list[str] = Field(
        description="Why the verdict is inconclusive (empty otherwise): low_confidence, no_usable_image, out_of_distribution, image_too_small, too_blurry."
    )
    flagged_features: list[FlaggedFeature] = Field(
        description="Flags raised on any usable photo, strongest first."
    )
    images_used: list[int] = Field(description="Indices of the photos that voted (usable ones).")
    input_sha256: list[str] = Field(description="SHA-256 of every photo of the item, in request order.")
    receipt: Receipt | None = Field(default=None, description="Signed evidence receipt for case files.")


class Timings(_Public):
    """Where the time went, in milliseconds."""

    decode_ms: float = Field(
        description="Reading and decoding the photos (wall time, photos decoded in parallel)."
    )
    inference_ms: float = Field(description="Waiting for and running the model (wall time).")
    total_ms: float = Field(description="From the request being admitted to the answer being built.")


class ScoreResponse(_Public):
    """Answer of ``POST /v1/score``."""

    request_id: str = Field(
        description="The server's id of this request (also the X-Request-ID header, and in the receipt); quote it in reports."
    )
    client_request_id: str | None = Field(
        default=None,
        description="The X-Request-ID the client sent (<= 64 of A-Z a-z 0-9 . _ : -), recorded beside the server's; never signed.",
    )
    model: ModelRef = Field(description="The model that answered.")
    item: ItemResult = Field(description="The item verdict, all usable photos combined.")
    images: list[ImageResult] = Field(description="Each photo's own result, in request order.")
    timings: Timings = Field(description="Where the time went.")


class ErrorDetail(_Public):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str = Field(description="What was wrong, for a person.")


class ErrorResponse(_Public):
    """Every error answer has this shape; no stack traces."""

    error: ErrorDetail = Field(description="What went wrong.")
    request_id: str | None = Field(default=None, description="Id of the request (X-Request-ID).")


class BatchImage(_Public):
    """One image of a JSON batch."""

    id: str = Field(min_length=1, max_length=200, description="Client id, unique within the call.")
    data: str = Field(description="The image file's bytes, base64 (standard alphabet).")
    item_id: str | None = Field(
        default=None, max_length=200, description="Images sharing an item_id are judged as one item (<= 8)."
    )


class BatchRequest(_Public):
    """JSON body of ``POST /v1/score/batch``."""

    images: list[BatchImage] = Field(min_length=1, description="1 to max_batch_images (64) images.")


class BatchImageResult(_Public):
    """One image of a batch: a result, or an error for this image only."""

    id: str = Field(description="The client id sent with the image.")
    item_id: str | None = Field(default=None, description="The item id sent with the image, if any.")
    status: Literal["ok", "error"] = Field(description="ok: `result` is set; error: `error` is set.")
    result: ImageResult | None = Field(
        default=None, description="The image's result (index = position in the call)."
    )
    error: ErrorDetail | None = Field(default=None, description="Why this image could not be scored.")


class BatchItemResult(_Public):
    """One item of a batch: the images sharing an ``item_id``, or a single image without one."""

    item_id: str | None = Field(description="The shared item id; null for an image sent without one.")
    image_ids: list[str] = Field(
        description="Client ids of the item's scored images, in request order; indices in `result` refer to this list."
    )
    status: Literal["ok", "error"] = Field(
        description="error when none of the item's images could be scored."
    )
    result: ItemResult | None = Field(default=None, description="The item verdict with its receipt.")
    error: ErrorDetail | None = Field(default=None, description="Why the item could not be judged.")


class BatchResponse(_Public):
    """Answer of ``POST /v1/score/batch``."""

    request_id: str = Field(description="The server's id of this request (also the X-Request-ID header).")
    client_request_id: str | None = Field(
        default=None,
        description="The X-Request-ID the client sent, recorded beside the server's; never signed.",
    )
    model: ModelRef = Field(description="The model that answered.")
    results: list[BatchImageResult] = Field(description="One entry per image, in request order.")
    items: list[BatchItemResult] = Field(description="One entry per item (shared item_id, or a lone image).")
    timings: Timings = Field(description="Where the time went.")
