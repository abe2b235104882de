"""The one predictor behind ``/v1/score``, ``/v1/score/batch`` and ``authlens score``.

Three steps, so that a server can run them on different threads and batch the middle one:

1. :meth:`Predictor.prepare`: bytes -> model input (shared decoding in :mod:`model.imaging`).
2. :meth:`Predictor.infer`: ``(B, H, W, 3)`` uint8 -> one :class:`RawOutput` per image (ONNX
   Runtime; thread-safe, and results do not depend on what else is in the batch).
3. :meth:`Predictor.judge_image` / :meth:`Predictor.judge_item`: outputs -> verdicts, flags and
   boxes by the rules of :mod:`model.decision`.

With a reference gallery attached (:meth:`Predictor.attach_gallery`), every judged photo is
looked up in it (perceptual hash from decoding, embedding from the graph): a match makes the photo
``inconclusive`` with ``reused_photo`` and it casts no vote, on every door alike.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
from PIL import Image

from model.bundle import Bundle, BundleError, BundleManifest, load_bundle
from model.decision import judge_image, judge_item, map_box, raised_flags, usability_reasons
from model.flags import FLAGS
from model.imaging import (
    CorruptImageError,
    DecodeBudget,
    DecodedImage,
    Geometry,
    ImageError,
    decode_image,
    resize_for_model,
    sharpness,
)
from model.logs import log_event
from model.ood import KnnOOD
from model.session import session_from_verified
from serving.gallery.phash import hash_source, source_hash, source_window_hashes
from serving.schemas import (
    Box,
    Explanation,
    FlaggedFeature,
    ImageResult,
    ItemResult,
    ModelRef,
    ReusedPhoto,
)

if TYPE_CHECKING:
    from serving.gallery.store import Gallery, Match

log = logging.getLogger(__name__)

OVERLAY_MAX_SIDE = 512
MAX_RUN_BATCH = 8
"""Most photos per ONNX Runtime call; :meth:`Predictor.infer` runs larger batches in such calls.
ONNX Runtime holds the activations of a whole call at once: with the 224 px two-backbone sneakers
graph, 16 photos took 224 MB beyond the loaded session and 8 photos 107 MB, while the time per
photo did not grow at 8 (docs/PERFORMANCE.md, "Changes measured")."""
_ORT_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, name)
    for name in (
        "Fail",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "RuntimeException",
        "InvalidArgument",
    )
    if hasattr(ort.capi.onnxruntime_pybind11_state, name)
)
_TITLES = {f.name: f.title for f in FLAGS}
# Overlay colour ramp: (position, R, G, B, alpha 0..255); low evidence stays transparent.
_RAMP = np.array(
    [[0.0, 255, 255, 0, 0], [0.35, 255, 230, 0, 0], [0.6, 255, 160, 0, 120], [1.0, 220, 0, 0, 190]],
    dtype=np.float64,
)


def _round(p: float) -> float:
    return round(float(p), 6)


@dataclass(frozen=True)
class PreparedImage:
    """A photo turned into model input, with what is needed to map results back to it."""

    sha256: str
    n_bytes: int
    format: str
    original_size: tuple[int, int]  # (width, height), oriented
    pixels: np.ndarray  # (H, W, 3) uint8 model input
    geometry: Geometry
    sharpness: float
    preview: np.ndarray | None  # (h, w, 3) uint8 oriented photo at overlay size, when explaining
    hash_source: np.ndarray | None = None  # (h, w) grey copy <= 256 px for the gallery's hashes
    phash: int | None = None  # whole-photo perceptual hash: the gallery's query key

    @property
    def reference_hashes(self) -> list[int] | None:
        """The window hashes stored when this photo becomes a gallery reference (whole photo first)."""
        return None if self.hash_source is None else source_window_hashes(self.hash_source)


@dataclass(frozen=True)
class RawOutput:
    """One image's row of the graph outputs (F = 0 for a bundle without flags)."""

    p_genuine: float
    flag_probs: np.ndarray  # (F,)
    cam: np.ndarray  # (h, w)
    flag_maps: np.ndarray  # (F, h, w)
    ood_score: float
    embedding: np.ndarray | None = None  # (D,) the graph's embedding output (reuse lookup)


class InferenceError(RuntimeError):
    """The graph answered with outputs that do not fit the bundle (wrong rows or shapes)."""


@dataclass(frozen=True)
class Listing:
    """Where an item's photos were found, for the reference gallery: photos of the same listing
    never count as reuse of each other, and matches are recorded as sightings of the reference."""

    listing_id: str | None = None
    seller_id: str | None = None
    record: bool = False  # store unmatched photos as listing references and matches as sightings


@dataclass(frozen=True)
class ItemOutcome:
    """An item's per-image and combined results."""

    images: list[ImageResult]
    item: ItemResult


class Predictor:
    """A verified bundle with its ONNX Runtime session.

    Args:
        bundle: A bundle from :func:`model.bundle.load_bundle`.
        threads: ONNX Runtime intra-op threads (0 = one per core).
        int8: Use the bundle's INT8 model.
        max_pixels: Largest photo accepted (pixels, from the header).
        budget: Decoding reserves its memory here first (:class:`model.imaging.DecodeBudget`).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        threads: int = 0,
        int8: bool = False,
        max_pixels: int,
        budget: DecodeBudget | None = None,
    ) -> None:
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.int8 = int8
        self.budget = budget  # serving: the process-wide decode budget; offline tools: none
        self.max_pixels = max_pixels
        graph = bundle.onnx_path(int8=int8).name
        # the bytes that were hashed are the bytes that run: never reopened by path
        self.session = session_from_verified(
            bundle.graph_bytes(int8=int8), bundle.blobs, threads, what=f"{bundle.path / graph}"
        )
        spec = self.manifest.input
        self.input_size = (spec.height, spec.width)
        self.output_shapes = expected_shapes(self.manifest)
        check_graph_io(self.session, self.manifest, f"{bundle.path / graph}")
        self.output_names = list(self.manifest.outputs)  # outputs are taken by name
        self.model_ref = ModelRef(
            name=self.manifest.name, version=self.manifest.version, bundle_sha256=bundle.sha256
        )
        self.gallery: Gallery | None = None
        self.widely_reused = 3  # listings from which a matched photo is reported as widely reused
        self.embedding_center = embedding_center(bundle)
        self.hash_photos = (
            False  # compute perceptual hashes in prepare (a gallery is attached, or adding to one)
        )
        self._embedding_key: str | None = None
        self._key_lock = threading.Lock()

    def attach_gallery(self, gallery: Gallery | None, *, widely_reused: int = 3) -> None:
        """Look every judged photo up in ``gallery`` (``None``: no reuse check)."""
        self.gallery = gallery
        self.widely_reused = widely_reused
        self.hash_photos = gallery is not None

    @property
    def embedding_key(self) -> str:
        """Which embedding space this graph's ``embedding`` output lives in: a digest of its
        (rounded, normalised) embedding of a fixed generated photo. Bundles sharing frozen
        ImageNet features share it, so the gallery's embeddings survive a retrained head."""
        with self._key_lock:
            if self._embedding_key is None:
                prepared = self.prepare(warmup_photo(self.input_size))
                e = self.infer(prepared.pixels[None])[0].embedding
                assert e is not None
                g = self.gallery_vector(e)
                unit = g / max(float(np.linalg.norm(g)), 1e-12)
                rounded = np.round(unit.astype(np.float64), 2) + 0.0  # no negative zeros
                digest = hashlib.sha256(rounded.astype("<f8").tobytes()).hexdigest()
                self._embedding_key = f"{len(e)}:{digest[:16]}"
            return self._embedding_key

    def gallery_vector(self, embedding: np.ndarray) -> np.ndarray:
        """The embedding as the gallery compares it: L2-normalised, minus the mean of the bundle's
        normalised reference embeddings. Every photo's features share a common part: with the
        sneakers model, unrelated photos' cosines have a median of 0.25 (p90 0.42) without the
        centring and -0.02 (p90 0.20) with it (docs/reuse.md), while edited copies stay near 1."""
        e = np.asarray(embedding, dtype=np.float32)
        return e / max(float(np.linalg.norm(e)), 1e-12) - self.embedding_center

    @classmethod
    def load(cls, directory: str | Path, **kwargs: object) -> Predictor:
        """Load and verify a bundle, then open its session (raises :class:`BundleError`)."""
        bundle = load_bundle(directory)
        try:
            return cls(bundle, **kwargs)  # type: ignore[arg-type]
        except _ORT_ERRORS as exc:
            raise BundleError(f"{bundle.path}: ONNX Runtime cannot load the model ({exc}).") from None

    def warmup(self) -> float:
        """Judge a generated photo end to end, as a request would be (first runs also allocate).

        The photo is decoded and resized by :meth:`prepare`, run in a batch of two and alone, and
        judged by :meth:`outcome`: outputs of the wrong shape or dtype, values that are not
        probabilities, or a row that depends on its batch refuse the model here instead of
        failing every request after it was swapped in.

        Returns:
            Milliseconds taken.

        Raises:
            BundleError: the model cannot serve (the message says what failed).
        """
        t = time.perf_counter()
        prepared = self.prepare(warmup_photo(self.input_size))
        pair = np.stack([prepared.pixels, prepared.pixels[::-1]])  # (2, H, W, 3): a batch of two
        try:
            raws = self.infer(pair)
            alone = self.infer(pair[:1])
        except InferenceError as exc:
            raise BundleError(f"{self.bundle.path}: the warm-up batch failed: {exc}") from None
        for raw in (*raws, *alone):
            if not (0.0 <= raw.p_genuine <= 1.0) or not np.isfinite(raw.ood_score):
                raise BundleError(
                    f"{self.bundle.path}: the warm-up batch gave p_genuine {raw.p_genuine} and OOD score "
                    f"{raw.ood_score}; expected a probability and a finite score."
                )
        if abs(raws[0].p_genuine - alone[0].p_genuine) > 1e-4:
            raise BundleError(
                f"{self.bundle.path}: a photo scored {raws[0].p_genuine:.6f} in a batch of two and "
                f"{alone[0].p_genuine:.6f} alone; outputs must not depend on the batch."
            )
        self.outcome([prepared], alone, ["warm-up"])  # verdict, flags and boxes, as for a request
        ms = (time.perf_counter() - t) * 1000
        log_event(log, "model_warm", bundle_sha256=self.bundle.sha256, warmup_ms=round(ms, 1))
        return ms

    # 1. decoding ---------------------------------------------------------------------------
    def prepare(self, data: bytes, *, explain: bool = False) -> PreparedImage:
        """Decode and resize a photo for the model.

        Raises:
            model.imaging.ImageError: with a stable ``code`` (empty, unsupported, corrupt, too large).
        """
        digest = hashlib.sha256(data).hexdigest()
        spec = self.manifest.input
        try:
            decoded = decode_image(
                data, max_pixels=self.max_pixels, draft_size=spec.draft_size, budget=self.budget
            )
            pixels, geometry = resize_for_model(decoded, self.input_size, policy=spec.resize)
            preview = _preview(decoded) if explain else None
            source = hash_source(decoded.pixels) if self.hash_photos else None
        except ImageError:
            raise
        except Exception as exc:  # a decoder fault on hostile bytes fails this photo, never the call
            log.error("decode_failed", exc_info=exc, extra={"fields": {"sha256": digest}})
            kind = type(exc).__qualname__
            if type(exc).__module__ != "builtins":
                kind = f"{type(exc).__module__}.{kind}"
            raise CorruptImageError(f"The image could not be decoded ({kind}).") from None
        return PreparedImage(
            sha256=digest,
            n_bytes=len(data),
            format=decoded.format,
            original_size=decoded.original_size,
            pixels=pixels,
            geometry=geometry,
            sharpness=sharpness(pixels),
            preview=preview,
            hash_source=source,
            phash=None if source is None else source_hash(source),
        )

    # 2. the model --------------------------------------------------------------------------
    def infer(self, pixels: np.ndarray) -> list[RawOutput]:
        """Run the graph on ``(B, H, W, 3)`` uint8 and split the outputs per image.

        Outputs are taken by name; a bundle without flags has no flag outputs, and its rows get
        empty ones (``(0,)`` probabilities, ``(0, h, w)`` maps).
        """
        out = self._run(np.ascontiguousarray(pixels, dtype=np.uint8))
        batch = pixels.shape[0]
        for name, value in out.items():
            want = (batch, *self.output_shapes[name])
            if value.shape != want or value.dtype != np.float32:
                raise InferenceError(
                    f"output {name} is {value.dtype}{list(value.shape)}, bundle.json implies float32{list(want)}."
                )
        p_genuine, cam, embedding = out["p_genuine"], out["cam"], out["embedding"]
        flag_probs = out.get("flag_probs", np.zeros((batch, 0), dtype=np.float32))  # (B, F)
        flag_maps = out.get("flag_maps", np.zeros((batch, 0, *cam.shape[1:]), dtype=np.float32))
        ood = self.bundle.ood_stats.score(embedding)  # (B,)
        return [
            RawOutput(float(p_genuine[i]), flag_probs[i], cam[i], flag_maps[i], float(ood[i]), embedding[i])
            for i in range(pixels.shape[0])
        ]

    def _run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs by name, run in calls of at most :data:`MAX_RUN_BATCH` photos."""
        parts = [
            self.session.run(self.output_names, {self.manifest.input_name: pixels[i : i + MAX_RUN_BATCH]})
            for i in range(0, max(len(pixels), 1), MAX_RUN_BATCH)
        ]
        if len(parts) == 1:
            return dict(zip(self.output_names, parts[0], strict=True))
        return {name: np.concatenate([part[k] for part in parts]) for k, name in enumerate(self.output_names)}

    # 3. decisions --------------------------------------------------------------------------
    def find_reuse(
        self, prepared: PreparedImage, raw: RawOutput, listing: Listing | None = None
    ) -> Match | None:
        """The gallery reference this photo copies, if a gallery is attached and one matches."""
        if self.gallery is None or prepared.phash is None or raw.embedding is None:
            return None
        return self.gallery.match(
            prepared.phash,
            self.gallery_vector(raw.embedding),
            model_key=self.embedding_key,
            exclude_listing=listing.listing_id if listing is not None else None,
        )

    def judge_image(
        self,
        prepared: PreparedImage,
        raw: RawOutput,
        *,
        index: int,
        filename: str | None = None,
        reuse: Match | None = None,
    ) -> ImageResult:
        """One photo's verdict, flags (with boxes in original pixels) and, if prepared so, overlay.

        ``reuse``: the gallery reference it copies (:meth:`find_reuse`): the photo is then
        ``inconclusive`` with ``reused_photo`` and does not vote.
        """
        decision = self.manifest.decision
        p_counterfeit = 1.0 - raw.p_genuine
        reasons = usability_reasons(
            min_side=min(prepared.original_size),
            sharpness=prepared.sharpness,
            ood_score=raw.ood_score,
            decision=decision,
            ood_threshold=self.manifest.ood.threshold,
            reused=reuse is not None,
        )
        outcome = judge_image(p_counterfeit, reasons, decision)
        flags = self._features([raw], [not reasons], [prepared.geometry], index_offset=index)
        return ImageResult(
            index=index,
            filename=filename,
            sha256=prepared.sha256,
            bytes=prepared.n_bytes,
            format=prepared.format,
            width=prepared.original_size[0],
            height=prepared.original_size[1],
            verdict=outcome.verdict,
            authenticity_score=_round(outcome.authenticity_score),
            counterfeit_probability=_round(outcome.counterfeit_probability),
            usable=not reasons,
            inconclusive_reasons=list(outcome.reasons),
            flagged_features=flags,
            flag_scores={n: _round(p) for n, p in zip(self.manifest.flags, raw.flag_probs, strict=True)},
            ood_score=round(raw.ood_score, 4),
            sharpness=round(prepared.sharpness, 2),
            explanation=self._explain(prepared, raw) if prepared.preview is not None else None,
            reused_photo=None if reuse is None else self._reused(reuse),
        )

    def _reused(self, m: Match) -> ReusedPhoto:
        ref = m.reference
        return ReusedPhoto(
            reference_id=ref.id,
            source=ref.source,
            kind=ref.kind,  # type: ignore[arg-type]
            label=ref.label,
            listing_id=ref.listing_id,
            seller_id=ref.seller_id,
            similarity=None if m.similarity is None else round(m.similarity, 4),
            hash_distance=m.hash_distance,
            matched_by=m.matched_by,  # type: ignore[arg-type]
            listings_seen=m.listings,
            sellers_seen=m.sellers,
            widely_reused=m.listings >= self.widely_reused,
        )

    def judge_item(
        self,
        images: Sequence[ImageResult],
        raws: Sequence[RawOutput],
        geometries: Sequence[Geometry],
    ) -> ItemResult:
        """Combine an item's photos by :func:`model.decision.judge_item` (mean logit of usable photos).

        ``images``, ``raws`` and ``geometries`` are aligned; indices in the result are positions in them.
        """
        decision = self.manifest.decision
        # an unusable photo's inconclusive_reasons are exactly its usability reasons
        votes = [(1.0 - r.p_genuine, _usability(im)) for im, r in zip(images, raws, strict=True)]
        outcome = judge_item(votes, decision)
        usable = [im.usable for im in images]
        return ItemResult(
            verdict=outcome.verdict,
            authenticity_score=_round(outcome.authenticity_score),
            counterfeit_probability=_round(outcome.counterfeit_probability),
            inconclusive_reasons=list(outcome.reasons),
            flagged_features=self._features(raws, usable, geometries, index_offset=0),
            images_used=[i for i, u in enumerate(usable) if u],
            input_sha256=[im.sha256 for im in images],
            reused_images=[i for i, im in enumerate(images) if im.reused_photo is not None],
        )

    def score_item(self, files: Sequence[tuple[str | None, bytes]], *, explain: bool = False) -> ItemOutcome:
        """Score the photos of one item in one model call (raises ImageError on a bad photo)."""
        prepared = [self.prepare(data, explain=explain) for _, data in files]
        raws = self.infer(np.stack([p.pixels for p in prepared]))
        return self.outcome(prepared, raws, [name for name, _ in files])

    def outcome(
        self,
        prepared: Sequence[PreparedImage],
        raws: Sequence[RawOutput],
        filenames: Sequence[str | None],
        *,
        listing: Listing | None = None,
    ) -> ItemOutcome:
        """Per-image and item results for an item's prepared photos and their outputs.

        With a gallery attached each photo is looked up in it; with ``listing.record`` a match is
        recorded as a sighting and an unmatched photo is stored as a listing reference.
        """
        images = []
        for i, (p, r, name) in enumerate(zip(prepared, raws, filenames, strict=True)):
            reuse = self.find_reuse(p, r, listing)
            images.append(self.judge_image(p, r, index=i, filename=name, reuse=reuse))
            if listing is not None and listing.record and self.gallery is not None:
                self._record(p, r, reuse, listing)
        return ItemOutcome(images, self.judge_item(images, raws, [p.geometry for p in prepared]))

    def _record(self, p: PreparedImage, r: RawOutput, reuse: Match | None, listing: Listing) -> None:
        assert self.gallery is not None
        if reuse is not None:
            self.gallery.record_sighting(
                reuse.reference.id,
                image_sha256=p.sha256,
                listing_id=listing.listing_id,
                seller_id=listing.seller_id,
            )
        elif listing.listing_id is not None and p.reference_hashes is not None and r.embedding is not None:
            self.gallery.add(
                hashes=p.reference_hashes,
                embedding=self.gallery_vector(r.embedding),
                model_key=self.embedding_key,
                sha256=p.sha256,
                size=p.original_size,
                source=f"listing {listing.listing_id}",
                kind="listing",
                listing_id=listing.listing_id,
                seller_id=listing.seller_id,
            )

    def _features(
        self,
        raws: Sequence[RawOutput],
        usable: Sequence[bool],
        geometries: Sequence[Geometry],
        *,
        index_offset: int,
    ) -> list[FlaggedFeature]:
        decision = self.manifest.decision
        flags = self.manifest.flags
        hits = raised_flags(np.stack([r.flag_probs for r in raws]), usable, decision, flags)
        out = []
        for hit in hits:
            f = flags.index(hit.name)
            box, _ = map_box(raws[hit.image].flag_maps[f], self.input_size)
            x0, y0, x1, y1 = geometries[hit.image].to_original(box)
            out.append(
                FlaggedFeature(
                    name=hit.name,
                    title=_TITLES.get(hit.name, hit.name),
                    score=_round(hit.score),
                    threshold=decision.flag_thresholds[hit.name],
                    image_index=hit.image + index_offset,
                    box=Box(x0=x0, y0=y0, x1=x1, y1=y1),
                )
            )
        return out

    def _explain(self, prepared: PreparedImage, raw: RawOutput) -> Explanation:
        assert prepared.preview is not None  # only called when prepared with explain=True
        h, w = prepared.preview.shape[:2]
        overlay = evidence_overlay(raw.cam, prepared.geometry, self.input_size, (w, h))
        return Explanation(
            overlay_png_base64=_b64(overlay, "PNG"),
            preview_jpeg_base64=_b64(Image.fromarray(prepared.preview), "JPEG"),
            width=w,
            height=h,
        )


def embedding_center(bundle: Bundle) -> np.ndarray:
    """``(D,)`` mean of the bundle's normalised reference embeddings (its OOD statistics: the
    training photos' embeddings for kNN, the class means for Mahalanobis)."""
    stats = bundle.ood_stats
    rows = np.asarray(stats.reference if isinstance(stats, KnnOOD) else stats.means, dtype=np.float32)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return rows.mean(axis=0).astype(np.float32)


def expected_shapes(manifest: BundleManifest) -> dict[str, tuple[int, ...]]:
    """Each graph output's shape after the batch axis, as ``bundle.json`` implies it."""
    n_flags, (h, w) = len(manifest.flags), manifest.map_size
    every = {
        "p_genuine": (),
        "flag_probs": (n_flags,),
        "cam": (h, w),
        "flag_maps": (n_flags, h, w),
        "embedding": (manifest.embedding_dim,),
    }
    return {name: every[name] for name in manifest.outputs}


def check_graph_io(session: ort.InferenceSession, manifest: BundleManifest, where: str) -> None:
    """Compare the graph's input and outputs (names, dtypes, shapes) with ``bundle.json``.

    The batch axis must be dynamic (the micro-batcher sends several photos per call); any other
    axis the graph fixes must equal what the bundle declares. Symbolic axes are checked by the
    warm-up run, which compares the actual output shapes.

    Raises:
        BundleError: naming each mismatch.
    """
    problems: list[str] = []

    def dims(name: str, kind: str, dtype: str, shape: Sequence[object], want: tuple[int, ...]) -> None:
        if kind != dtype:
            problems.append(f"{name} is {kind}, expected {dtype}")
        if len(shape) != len(want) + 1:
            problems.append(f"{name} has shape {list(shape)}, expected [batch, {', '.join(map(str, want))}]")
            return
        if isinstance(shape[0], int):
            problems.append(f"{name} has a fixed batch axis ({shape[0]}); it must be dynamic")
        for axis, (got, expected) in enumerate(zip(shape[1:], want, strict=True), 1):
            if isinstance(got, int) and got != expected:
                problems.append(f"{name} axis {axis} is {got}, bundle.json implies {expected}")

    inputs = session.get_inputs()
    spec = manifest.input
    if [i.name for i in inputs] != [manifest.input_name]:
        problems.append(f"inputs {[i.name for i in inputs]}, expected [{manifest.input_name!r}]")
    else:
        dims(inputs[0].name, inputs[0].type, "tensor(uint8)", inputs[0].shape, (spec.height, spec.width, 3))
    outputs = session.get_outputs()
    if tuple(o.name for o in outputs) != tuple(manifest.outputs):
        problems.append(f"outputs {[o.name for o in outputs]}, expected {list(manifest.outputs)}")
    else:
        shapes = expected_shapes(manifest)
        for o in outputs:
            dims(o.name, o.type, "tensor(float)", o.shape, shapes[o.name])
    if problems:
        raise BundleError(f"{where}: the graph does not match bundle.json: {'; '.join(problems)}.")


def warmup_photo(input_size: tuple[int, int]) -> bytes:
    """A textured JPEG of the model input's size, for the warm-up run."""
    h, w = (max(side, 16) for side in input_size)
    y, x = np.mgrid[0:h, 0:w]
    pixels = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _usability(image: ImageResult) -> tuple[str, ...]:
    return () if image.usable else tuple(image.inconclusive_reasons)


def _b64(img: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {"optimize": False}))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def overlay_size(original_size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of overlays and previews: the photo's aspect, longer side <= 512."""
    w, h = original_size
    ratio = min(1.0, OVERLAY_MAX_SIDE / max(w, h))
    return max(1, round(w * ratio)), max(1, round(h * ratio))


def _preview(decoded: DecodedImage) -> np.ndarray:
    w, h = overlay_size(decoded.original_size)
    img = Image.fromarray(decoded.pixels)
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def evidence_overlay(
    cam: np.ndarray, geometry: Geometry, input_size: tuple[int, int], size: tuple[int, int]
) -> Image.Image:
    """Colour the counterfeit-evidence map and align it with the original photo.

    Args:
        cam: ``(h, w)`` per-location counterfeit logit.
        geometry: How the model input was cut from the photo (letterbox padding is cropped).
        input_size: ``(H, W)`` of the model input.
        size: ``(width, height)`` of the overlay.

    Returns:
        RGBA image: transparent for the weakest evidence, yellow to red for the strongest,
        normalised within this photo.
    """
    a = np.asarray(cam, dtype=np.float64)
    span = a.max() - a.min()
    v = (a - a.min()) / span if span > 1e-12 else np.zeros_like(a)
    ih, iw = input_size
    # (h, w) -> (H, W) model pixels, then crop the letterbox padding
    field = np.asarray(Image.fromarray(v.astype(np.float32), "F").resize((iw, ih), Image.Resampling.BILINEAR))
    ow, oh = geometry.original_size
    x0, y0 = round(geometry.pad_x), round(geometry.pad_y)
    x1 = min(iw, max(x0 + 1, round(geometry.pad_x + ow / geometry.scale_x)))
    y1 = min(ih, max(y0 + 1, round(geometry.pad_y + oh / geometry.scale_y)))
    field = np.asarray(
        Image.fromarray(np.ascontiguousarray(field[y0:y1, x0:x1]), "F").resize(
            size, Image.Resampling.BILINEAR
        )
    )
    field = np.clip(field, 0.0, 1.0)
    channels = [np.interp(field, _RAMP[:, 0], _RAMP[:, k]) for k in range(1, 5)]
    rgba = np.clip(np.stack(channels, axis=-1) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")
