"""What the API and the CLI do with the gallery: add scored photos, describe references."""

from __future__ import annotations

from collections.abc import Sequence

from serving.gallery.store import Cluster, Gallery, GalleryError, Reference
from serving.predictor import Predictor, PreparedImage, RawOutput
from serving.schemas import GalleryReference, ReuseCluster

MAX_CLUSTER_MEMBERS = 200


def reference_out(ref: Reference) -> GalleryReference:
    """A stored reference as the API shows it."""
    return GalleryReference(
        id=ref.id,
        kind=ref.kind,  # type: ignore[arg-type]
        source=ref.source,
        label=ref.label,
        listing_id=ref.listing_id,
        seller_id=ref.seller_id,
        sha256=ref.sha256,
        width=ref.width,
        height=ref.height,
        added_at=ref.added_at,
        model_key=ref.model_key,
    )


def cluster_out(c: Cluster) -> ReuseCluster:
    return ReuseCluster(
        reference=reference_out(c.reference),
        listings=c.listings[:MAX_CLUSTER_MEMBERS],
        sellers=c.sellers[:MAX_CLUSTER_MEMBERS],
        sightings=c.sightings,
        first_seen=c.first_seen,
        last_seen=c.last_seen,
    )


def add_scored(
    gallery: Gallery,
    predictor: Predictor,
    prepared: PreparedImage,
    raw: RawOutput,
    *,
    source: str,
    kind: str,
    label: str | None = None,
    listing_id: str | None = None,
    seller_id: str | None = None,
) -> tuple[Reference, bool]:
    """Store a decoded and embedded photo; ``(reference, added)`` (an identical file already
    stored is returned with ``added`` false).

    Raises:
        GalleryError: an unknown kind, or the file cannot be written.
    """
    existing = gallery.find_sha256(prepared.sha256)
    if existing is not None:
        return existing, False
    if prepared.reference_hashes is None or raw.embedding is None:
        raise GalleryError("The photo has no hashes or embedding to store.")
    ref = gallery.add(
        hashes=prepared.reference_hashes,
        embedding=predictor.gallery_vector(raw.embedding),
        model_key=predictor.embedding_key,
        sha256=prepared.sha256,
        size=prepared.original_size,
        source=source,
        kind=kind,
        label=label,
        listing_id=listing_id,
        seller_id=seller_id,
    )
    return ref, True


def describe(refs: Sequence[Reference]) -> list[GalleryReference]:
    return [reference_out(r) for r in refs]
