"""Public response shapes, shared by the HTTP API and ``authlens score`` (one predictor, two doors).

Field descriptions here are what ``/docs`` shows. Probabilities are rounded to 6 decimals;
verdicts are decided on the unrounded values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

Verdict = Literal["genuine", "counterfeit", "inconclusive"]


def _iso_8601(value: object) -> object:
    """An ISO 8601 date-time only: pydantic alone would also take numbers (and numeric strings) as
    Unix times, which the schema does not promise."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-11-30T10:00:00Z")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not an ISO 8601 date-time, e.g. 2026-11-30T10:00:00Z") from None


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_8601)]
"""A date-time given as an ISO 8601 string (a time zone optional)."""
IsoAwareDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]
"""A date-time given as an ISO 8601 string with a time zone."""


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


class ReusedPhoto(_Public):
    """The reference gallery entry a photo copies (see docs/reuse.md)."""

    reference_id: int = Field(description="Id of the gallery reference (`authlens gallery list`, admin API).")
    source: str = Field(
        description="Where the reference comes from, as it was added (catalogue name, listing URL ...)."
    )
    kind: Literal["catalogue", "listing"] = Field(
        description="catalogue: an official product photo; listing: a photo seen before in another listing."
    )
    label: str | None = Field(default=None, description="The reference's label (product model), if given.")
    listing_id: str | None = Field(
        default=None, description="For a listing photo: the listing it was first seen in."
    )
    seller_id: str | None = Field(
        default=None, description="For a listing photo: the seller of that listing."
    )
    similarity: float | None = Field(
        description="Cosine similarity of the two photos' embeddings (1 = identical); null when the "
        "reference was embedded by another model and matched by its hash alone."
    )
    hash_distance: int | None = Field(
        description="Bits (of 64) between the photo's perceptual hash and the nearest of the reference's "
        "window hashes; null when it matched by embedding alone."
    )
    matched_by: Literal["hash", "hash+embedding", "embedding"] = Field(
        description="Which signal decided the match: a near-identical hash, hash and embedding together, "
        "or a very high embedding similarity (crops)."
    )
    listings_seen: int = Field(
        description="Distinct listings this photo has been seen in (the reference's own included)."
    )
    sellers_seen: int = Field(description="Distinct sellers among those listings.")
    widely_reused: bool = Field(
        description="True when the photo has been seen in at least the server's gallery_widely_reused listings."
    )


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
        description="Why the verdict is inconclusive (empty otherwise): low_confidence, out_of_distribution, image_too_small, too_blurry, reused_photo."
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
    reused_photo: ReusedPhoto | None = Field(
        default=None,
        description="Set when the photo matches the reference gallery (a catalogue photo or another "
        "listing's): it proves nothing about this item and does not vote (reason reused_photo).",
    )


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
        description="Why the verdict is inconclusive (empty otherwise): low_confidence, no_usable_image, out_of_distribution, image_too_small, too_blurry, reused_photo."
    )
    flagged_features: list[FlaggedFeature] = Field(
        description="Flags raised on any usable photo, strongest first."
    )
    images_used: list[int] = Field(description="Indices of the photos that voted (usable ones).")
    input_sha256: list[str] = Field(description="SHA-256 of every photo of the item, in request order.")
    reused_images: list[int] = Field(
        default_factory=list,
        description="Indices of the photos that match the reference gallery (see each photo's reused_photo); they did not vote.",
    )
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


class ListingMeta(_Public):
    """Where a crawler found an item: stored with its answer in the review queue (``review_enabled``)."""

    marketplace: str | None = Field(
        default=None, max_length=100, description="Marketplace, e.g. `example-shop`."
    )
    listing_url: str | None = Field(
        default=None, max_length=2000, pattern=r"^https?://\S+$", description="The listing's http(s) URL."
    )
    seller_id: str | None = Field(
        default=None, max_length=200, description="Seller of the listing (overrides the image's seller_id)."
    )
    price: float | None = Field(default=None, ge=0, le=1e12, strict=True, description="Listed price.")
    currency: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code of the price, e.g. `EUR`."
    )
    title: str | None = Field(default=None, max_length=500, description="The listing's title.")
    brand: str | None = Field(default=None, max_length=100, description="Brand the listing claims.")
    category: str | None = Field(default=None, max_length=100, description="Product category.")
    crawled_at: IsoAwareDatetime | None = Field(
        default=None, description="When the crawler fetched the listing (ISO 8601 with a time zone)."
    )
    client_id: str | None = Field(default=None, max_length=200, description="The crawler that sent it.")


class BatchImage(_Public):
    """One image of a JSON batch."""

    id: str = Field(min_length=1, max_length=200, description="Client id, unique within the call.")
    data: str = Field(description="The image file's bytes, base64 (standard alphabet).")
    item_id: str | None = Field(
        default=None, max_length=200, description="Images sharing an item_id are judged as one item (<= 8)."
    )
    seller_id: str | None = Field(
        default=None,
        max_length=200,
        description="Seller of the item's listing (item_id), recorded with reference-gallery sightings.",
    )
    listing: ListingMeta | None = Field(
        default=None,
        description="Listing metadata for the review queue; the first image of an item that has it sets it.",
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


# --------------------------------------------------------------------------- recorded streams


class VideoFlag(_Public):
    """A flag raised in a segment: on which frame and where."""

    name: str = Field(description="Stable flag identifier, e.g. `stitch_irregular`.")
    title: str = Field(description="Human title of the flag.")
    score: float = Field(description="Probability of the tell on the frame where it is strongest (0..1).")
    threshold: float = Field(description="The bundle's threshold at or above which the flag is raised.")
    time_s: float = Field(description="Presentation time (seconds) of the frame where it is strongest.")
    box: Box = Field(description="Where on that frame, in the recording's pixel coordinates.")


class VideoSegment(_Public):
    """One shot of the recording, judged like the photos of one item."""

    index: int = Field(description="Position of the segment in the report.")
    start_s: float = Field(description="Start of the shot (seconds from the start of the recording).")
    end_s: float = Field(
        description="End of the shot (seconds), one sampling interval after its last sampled frame."
    )
    frames_scored: int = Field(description="Sampled frames of the shot that the model scored.")
    frames_usable: int = Field(
        description="Scored frames that voted (not too small, blurry or out of distribution)."
    )
    frames_duplicate: int = Field(
        description="Sampled frames skipped as near-identical to the previous scored frame."
    )
    verdict: Verdict = Field(
        description="genuine | counterfeit | inconclusive, by the rules of one item's photos."
    )
    authenticity_score: float = Field(
        description="Calibrated probability that the item on screen is genuine."
    )
    counterfeit_probability: float = Field(description="1 - authenticity_score.")
    inconclusive_reasons: list[str] = Field(
        description="Why the verdict is inconclusive (empty otherwise), as for an item of photos."
    )
    flagged_features: list[VideoFlag] = Field(
        description="Flags raised on any usable frame, strongest first."
    )
    suspect_frame_s: float = Field(
        description="Time of the segment's most suspect frame (highest counterfeit probability among usable frames)."
    )
    thumbnail_jpeg_base64: str = Field(description="That frame as a JPEG (longer side <= 320), base64.")


class VideoPoint(_Public):
    """One scored frame on the timeline."""

    time_s: float = Field(description="Presentation time in seconds.")
    counterfeit_probability: float = Field(description="The frame's calibrated counterfeit probability.")
    usable: bool = Field(description="Whether the frame voted for its segment.")


class VideoInfoOut(_Public):
    """What the container says about the recording."""

    container: str = Field(description="MP4, MKV, FLV or TS.")
    codec: str = Field(description="Video codec (FFmpeg's name).")
    width: int = Field(description="Frame width in pixels.")
    height: int = Field(description="Frame height in pixels.")
    duration_s: float = Field(description="Declared duration in seconds (0 when the container does not say).")
    fps: float = Field(description="Declared frame rate.")
    bytes: int = Field(description="File size in bytes.")


class VideoSampling(_Public):
    """How much of the recording was looked at."""

    sample_fps: float = Field(description="Frames sampled per second of video.")
    frames_sampled: int = Field(description="Frames sampled in all.")
    frames_scored: int = Field(description="Sampled frames the model scored.")
    frames_duplicate: int = Field(
        description="Sampled frames skipped as near-identical to the previous scored one."
    )
    shots: int = Field(description="Shots found (a segment is a shot with at least one scored frame).")


class VideoProcessing(_Public):
    """How long it took."""

    seconds: float = Field(description="Wall time from opening the file to the finished report.")
    inference_seconds: float = Field(description="Of which waiting for and running the model.")
    realtime_factor: float = Field(
        description="Seconds of video processed per second of wall time (x real time)."
    )


class VideoReport(_Public):
    """Where in a recorded stream suspect items were on screen (see docs/streams.md)."""

    name: str = Field(description="The recording's file name.")
    model: ModelRef = Field(description="The model that answered.")
    video: VideoInfoOut = Field(description="The recording as the container describes it.")
    sampling: VideoSampling = Field(description="Frames sampled, scored and skipped.")
    complete: bool = Field(description="False when decoding stopped before the end (see stopped_at_s).")
    stopped_at_s: float | None = Field(
        default=None,
        description="Where decoding stopped early (corrupt, truncated, a limit, cancelled); null when complete.",
    )
    stop_reason: str | None = Field(default=None, description="Why it stopped early, for a person.")
    segments: list[VideoSegment] = Field(description="One per shot with scored frames, in time order.")
    suspect_segments: list[int] = Field(description="Indices of the segments judged counterfeit.")
    timeline: list[VideoPoint] = Field(
        description="Every scored frame's counterfeit probability, in time order."
    )
    timeline_png_base64: str = Field(
        description="PNG strip of the counterfeit probability over time, segments shaded by verdict, base64."
    )
    processing: VideoProcessing = Field(description="Wall time and speed as a multiple of real time.")


JobState = Literal["queued", "running", "done", "failed"]


class JobError(_Public):
    """Why a job failed."""

    code: str = Field(
        description="Stable code: unsupported_video, corrupt_video, video_too_large, deadline_exceeded, internal_error ..."
    )
    message: str = Field(description="What was wrong, for a person.")


class JobAccepted(_Public):
    """Answer of ``POST /v1/score/video`` (202): the job to poll."""

    job_id: str = Field(description="Id of the background job.")
    status: JobState = Field(description="queued (or running) at once.")
    status_url: str = Field(description="Poll this (GET) for progress and, once done, the report.")


class JobStatus(_Public):
    """A video job's state; the report once done."""

    job_id: str = Field(description="Id of the job.")
    status: JobState = Field(description="queued, running, done or failed.")
    name: str = Field(description="The recording's file name.")
    created_at: float = Field(description="Unix time the job was accepted.")
    started_at: float | None = Field(default=None, description="Unix time it started running.")
    finished_at: float | None = Field(default=None, description="Unix time it finished.")
    expires_at: float | None = Field(
        default=None,
        description="Unix time after which the job and its report are forgotten (video_job_ttl_s after it finished).",
    )
    progress: float = Field(description="Share of the recording processed, 0..1.")
    processed_s: float = Field(description="Seconds of video processed so far.")
    duration_s: float = Field(description="Declared duration of the recording in seconds (0 until known).")
    queue_position: int | None = Field(default=None, description="Jobs ahead of this one while queued.")
    error: JobError | None = Field(default=None, description="Why it failed (status failed).")
    report: VideoReport | None = Field(default=None, description="The report (status done).")


# --------------------------------------------------------------------------- reference gallery


class GalleryReference(_Public):
    """One entry of the reference gallery."""

    id: int = Field(description="Reference id.")
    kind: Literal["catalogue", "listing"] = Field(
        description="catalogue: an official product photo; listing: a photo seen in a listing."
    )
    source: str = Field(description="Where it comes from (catalogue name, listing URL ...).")
    label: str | None = Field(default=None, description="Product model or any label given.")
    listing_id: str | None = Field(
        default=None, description="Listing the photo was first seen in (listing photos)."
    )
    seller_id: str | None = Field(default=None, description="Seller of that listing, if known.")
    sha256: str = Field(description="SHA-256 of the photo's bytes as added.")
    width: int = Field(description="Photo width in pixels (EXIF orientation applied).")
    height: int = Field(description="Photo height in pixels.")
    added_at: float = Field(description="Unix time it was added.")
    model_key: str = Field(
        description="Embedding space of its stored embedding (bundles sharing frozen features share it); "
        "references of another space are matched by perceptual hash alone."
    )


class GalleryAddEntry(_Public):
    """A photo to add to the gallery (JSON, base64)."""

    data: str = Field(
        description="The photo file's bytes, base64 (standard alphabet). JPEG, PNG, WebP or HEIC."
    )
    source: str = Field(
        min_length=1, max_length=500, description="Where it comes from (catalogue name, URL ...)."
    )
    kind: Literal["catalogue", "listing"] = Field(default="catalogue", description="catalogue or listing.")
    label: str | None = Field(default=None, max_length=200, description="Product model or any label.")
    listing_id: str | None = Field(default=None, max_length=200, description="Listing id (listing photos).")
    seller_id: str | None = Field(default=None, max_length=200, description="Seller id (listing photos).")


class GalleryAddRequest(_Public):
    """Body of ``POST /v1/admin/gallery``."""

    references: list[GalleryAddEntry] = Field(
        min_length=1, max_length=64, description="1 to 64 photos to add."
    )


class GalleryAddResult(_Public):
    """One photo of an add call: its reference, or why it could not be added."""

    status: Literal["added", "exists", "error"] = Field(
        description="added; exists (the same bytes are already a reference: that one is returned); error."
    )
    reference: GalleryReference | None = Field(default=None, description="The reference (added or existing).")
    error: ErrorDetail | None = Field(default=None, description="Why the photo could not be added.")


class GalleryAddResponse(_Public):
    """Answer of ``POST /v1/admin/gallery``."""

    results: list[GalleryAddResult] = Field(description="One entry per photo, in request order.")
    total: int = Field(description="References in the gallery now.")


class GalleryList(_Public):
    """Answer of ``GET /v1/admin/gallery``."""

    references: list[GalleryReference] = Field(description="References, newest first.")
    total: int = Field(description="References in the gallery.")


class ReuseCluster(_Public):
    """A photo seen in several listings."""

    reference: GalleryReference = Field(
        description="The reference photo (the first listing it was seen in, or a catalogue photo)."
    )
    listings: list[str] = Field(description="Distinct listing ids it was seen in (at most 200).")
    sellers: list[str] = Field(description="Distinct seller ids among them (at most 200).")
    sightings: int = Field(description="Times a scored photo matched it, the reference itself included.")
    first_seen: float = Field(description="Unix time of the first sighting.")
    last_seen: float = Field(description="Unix time of the last sighting.")


class ReuseClusters(_Public):
    """Answer of ``GET /v1/gallery/clusters``."""

    clusters: list[ReuseCluster] = Field(description="Most listings first.")
