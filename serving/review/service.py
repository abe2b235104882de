"""Recording scored items: from a batch answer to stored rows, never losing an accepted answer.

:class:`Recorder` turns each judged item of a ``/v1/score/batch`` answer into an
:class:`~serving.review.records.ItemRecord`, writes its photos into the photo folder (by SHA-256)
and stores it. When the database cannot take it (down, locked, full), the record is appended to
a JSON Lines spool file, flushed to disk, and a background thread retries the spool every
``retry_s`` seconds until the database takes it; records are stored once (by receipt id).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.logs import log_event
from serving.review.records import ItemRecord, PhotoRecord
from serving.review.store import ReviewStore, open_store
from serving.schemas import BatchImageResult, BatchResponse, ListingMeta

log = logging.getLogger(__name__)


def photo_path(folder: Path, sha256: str) -> Path:
    """Where a photo's bytes live: ``folder/ab/abcdef...`` (content-addressed)."""
    return folder / sha256[:2] / sha256


def save_photo(folder: Path, sha256: str, data: bytes) -> bool:
    """Write a photo once (atomically); ``False`` when it could not be written."""
    path = photo_path(folder, sha256)
    if path.exists():
        return True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{sha256}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log_event(log, "review_photo_unsaved", logging.WARNING, sha256=sha256, error=str(exc))
        return False


def records_from_batch(
    answer: BatchResponse,
    photos: dict[str, bytes],
    listings: dict[str, ListingMeta],
    sellers: dict[str, str],
    *,
    scored_at: datetime | None = None,
) -> list[ItemRecord]:
    """One record per judged item of a batch answer.

    Args:
        answer: The batch answer as returned.
        photos: Photo bytes by client image id (those that decoded).
        listings: Listing metadata by item key (``item_id``, or the image id of a lone image).
        sellers: Seller id by ``item_id`` (the images' ``seller_id``).
        scored_at: When (default now).
    """
    when = scored_at or datetime.now(UTC)
    results: dict[str, BatchImageResult] = {r.id: r for r in answer.results}
    out: list[ItemRecord] = []
    for item in answer.items:
        if item.status != "ok" or item.result is None or item.result.receipt is None:
            continue
        key = item.item_id if item.item_id is not None else item.image_ids[0]
        meta = listings.get(key) or ListingMeta()
        images = [results[i] for i in item.image_ids if i in results]
        reasons = list(item.result.inconclusive_reasons)
        for im in images:
            for reason in im.result.inconclusive_reasons if im.result else []:
                if reason not in reasons:
                    reasons.append(reason)
        doc = {
            "request_id": answer.request_id,
            "model": answer.model.model_dump(),
            "items": [item.model_dump(mode="json")],
            "results": [im.model_dump(mode="json") for im in images],
        }
        receipt = item.result.receipt
        out.append(
            ItemRecord(
                scored_at=when,
                request_id=answer.request_id,
                receipt_id=str(receipt.payload.get("receipt_id") or receipt.signature[:64]),
                item_key=key,
                verdict=item.result.verdict,
                counterfeit_probability=item.result.counterfeit_probability,
                model_sha256=answer.model.bundle_sha256,
                answer=doc,
                receipt=receipt.model_dump(mode="json"),
                reasons=reasons,
                flags=[f.name for f in item.result.flagged_features],
                client_id=meta.client_id,
                marketplace=meta.marketplace,
                listing_url=meta.listing_url,
                seller_id=meta.seller_id or (sellers.get(item.item_id) if item.item_id else None),
                price=meta.price,
                currency=meta.currency,
                title=meta.title,
                brand=meta.brand,
                category=meta.category,
                crawled_at=meta.crawled_at,
                photos=[_photo(k, im) for k, im in enumerate(images) if im.result is not None],
            )
        )
        for p in out[-1].photos:
            p.stored = p.client_image_id in photos
    return out


def _photo(position: int, im: BatchImageResult) -> PhotoRecord:
    r = im.result
    assert r is not None
    reuse = r.reused_photo
    return PhotoRecord(
        position=position,
        sha256=r.sha256,
        client_image_id=im.id,
        format=r.format,
        reference_id=reuse.reference_id if reuse else None,
        reference_seller_id=reuse.seller_id if reuse else None,
    )


class Recorder:
    """Stores records, spooling those the database cannot take; retries the spool in the background."""

    def __init__(self, url: str, photos_dir: Path, spool: Path, *, retry_s: float = 30.0) -> None:
        self.url = url
        self.photos_dir = photos_dir
        self.spool = spool
        self.retry_s = retry_s
        self._store: ReviewStore | None = None
        self._lock = threading.Lock()  # the spool file and opening the store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._retry_loop, name="review-spool", daemon=True)
        self._thread.start()

    def store(self) -> ReviewStore:
        """The store, opened (and migrated) on first use; raises while the database is unreachable."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.url)
            return self._store

    def record(self, records: Sequence[ItemRecord], photos: dict[str, bytes]) -> tuple[int, int]:
        """Save the photos and store the records; ``(stored, spooled)``."""
        for rec in records:
            for p in rec.photos:
                data = photos.get(p.client_image_id or "")
                p.stored = data is not None and save_photo(self.photos_dir, p.sha256, data)
        stored = 0
        pending: list[ItemRecord] = []
        for rec in records:
            try:
                self.store().add(rec)
                stored += 1
            except Exception as exc:  # any failure of the store: the answer must not be lost
                log_event(
                    log, "review_store_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:500]
                )
                pending.append(rec)
        if pending:
            self._spool(pending)
        return stored, len(pending)

    def _spool(self, records: Sequence[ItemRecord]) -> None:
        with self._lock:
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            with open(self.spool, "a", encoding="utf-8") as f:
                for rec in records:
                    f.write(rec.to_json() + "\n")
                f.flush()
                os.fsync(f.fileno())
        log_event(log, "review_spooled", logging.WARNING, records=len(records), spool=str(self.spool))

    def pending(self) -> int:
        """Records waiting in the spool."""
        with self._lock:
            if not self.spool.exists():
                return 0
            return sum(1 for line in self.spool.read_text(encoding="utf-8").splitlines() if line.strip())

    def retry(self) -> tuple[int, int]:
        """Store what the spool holds; ``(stored, still pending)``. Lines that do not parse stay."""
        with self._lock:
            if not self.spool.exists():
                return 0, 0
            lines = [ln for ln in self.spool.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not lines:
            return 0, 0
        try:
            store = self.store()
        except Exception:
            return 0, len(lines)
        left: list[str] = []
        for line in lines:
            try:
                store.add(ItemRecord.from_json(line))
            except Exception:
                left.append(line)
        with self._lock:  # keep lines appended while we were storing
            now = [ln for ln in self.spool.read_text(encoding="utf-8").splitlines() if ln.strip()]
            keep = left + now[len(lines) :]
            tmp = self.spool.with_suffix(".tmp")
            tmp.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
            os.replace(tmp, self.spool)
        log_event(log, "review_spool_retried", stored=len(lines) - len(left), pending=len(left))
        return len(lines) - len(left), len(left)

    def _retry_loop(self) -> None:
        while not self._stop.wait(self.retry_s):
            try:
                self.retry()
            except Exception as exc:  # the loop must outlive any one failure
                log_event(log, "review_spool_retry_failed", logging.WARNING, error=str(exc)[:300])

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._store is not None:
                self._store.close()


def photo_bytes(inputs: Sequence[tuple[str | None, Any]]) -> dict[str, bytes]:
    """Bytes by client id of the inputs that are bytes."""
    return {cid: data for cid, data in inputs if cid is not None and isinstance(data, bytes)}
