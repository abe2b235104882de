"""The reference gallery: official catalogue photos and previously seen listing photos.

Stored in one SQLite file (standard library; WAL, so the CLI can add while a server reads) with,
per reference, its window hashes (:mod:`serving.gallery.phash`) and its embedding (the bundle's
``embedding`` output, float16, tagged with the model that made it), plus the sightings of each
reference in scored listings. Searching happens in memory (:mod:`serving.gallery.index`),
loaded when the gallery opens and refreshed when another process changed the file.

A photo *matches* a reference (:meth:`Gallery.match`) when

* its hash is within :data:`HASH_STRICT` bits of one of the reference's windows (re-encoded,
  resized, watermarked or lightly edited copies) and the embeddings do not disagree (cosine at
  least :data:`COS_FLOOR`, when both come from the same model), or
* within :data:`HASH_LOOSE` bits and the embeddings' cosine is at least :data:`COS_LOOSE`
  (heavier edits, or crops close to a stored window), or
* the cosine is at least :data:`COS_STRICT` (crops the hash windows do not cover).

The thresholds were set from the measurements in ``docs/reuse.md`` (``benchmarks/bench_reuse.py``):
copies with each edit type against photos of distinct items of the same model.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from serving.gallery.index import EXACT_LIMIT, HashIndex, VectorIndex, project, unit
from serving.gallery.phash import to_signed

Kind = Literal["catalogue", "listing"]
KINDS: tuple[str, ...] = ("catalogue", "listing")

HASH_STRICT = 8
HASH_LOOSE = 12
COS_FLOOR = 0.3
COS_LOOSE = 0.80
COS_STRICT = 0.88
TOP_K = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS refs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('catalogue', 'listing')),
    source TEXT NOT NULL,
    label TEXT,
    listing_id TEXT,
    seller_id TEXT,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added_at REAL NOT NULL,
    model_key TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_sha256 ON refs (sha256);
CREATE INDEX IF NOT EXISTS refs_listing ON refs (listing_id);
CREATE TABLE IF NOT EXISTS ref_hashes (
    ref_id INTEGER NOT NULL REFERENCES refs (id) ON DELETE CASCADE,
    window INTEGER NOT NULL,
    hash INTEGER NOT NULL,
    PRIMARY KEY (ref_id, window)
);
CREATE INDEX IF NOT EXISTS ref_hashes_hash ON ref_hashes (hash);
CREATE TABLE IF NOT EXISTS sightings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ref_id INTEGER NOT NULL REFERENCES refs (id) ON DELETE CASCADE,
    listing_id TEXT,
    seller_id TEXT,
    image_sha256 TEXT NOT NULL,
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sightings_ref ON sightings (ref_id);
"""


class GalleryError(Exception):
    """The gallery cannot do what was asked (unknown id, bad kind, unwritable file)."""


@dataclass(frozen=True)
class Reference:
    """One gallery entry."""

    id: int
    kind: str
    source: str
    label: str | None
    listing_id: str | None
    seller_id: str | None
    sha256: str
    width: int
    height: int
    added_at: float
    model_key: str


@dataclass(frozen=True)
class Match:
    """A photo found in the gallery."""

    reference: Reference
    similarity: float | None  # cosine of the embeddings; None when made by another model
    hash_distance: int | None  # smallest distance to the reference's window hashes (bits of 64)
    matched_by: str  # "hash", "hash+embedding" or "embedding"
    listings: int  # distinct listings the photo was seen in (the reference's own included)
    sellers: int  # distinct sellers


@dataclass(frozen=True)
class Cluster:
    """A reference with the listings and sellers it was seen in."""

    reference: Reference
    listings: list[str]
    sellers: list[str]
    sightings: int
    first_seen: float
    last_seen: float


_REF_COLUMNS = "id, kind, source, label, listing_id, seller_id, sha256, width, height, added_at, model_key"


def _ref(row: Sequence[object]) -> Reference:
    return Reference(*row)  # type: ignore[arg-type]


class Gallery:
    """The gallery file and its in-memory indexes (thread-safe).

    Args:
        path: The SQLite file; created on the first :meth:`add` when missing.
        exact_limit: References searched exactly; beyond, the ANN path (see :mod:`serving.gallery.index`).
    """

    def __init__(self, path: str | Path, *, exact_limit: int = EXACT_LIMIT) -> None:
        self.path = Path(path)
        self.exact_limit = exact_limit
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._hashes = HashIndex(exact_limit)
        self._vectors: dict[str, VectorIndex] = {}
        self.loads = 0
        if self.path.exists():
            self._open()
            self._load()

    # storage ------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise GalleryError(f"{self.path}: the gallery cannot be opened ({exc}).") from None
            self._conn = conn
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._open()
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._version = self._data_version()

    def _data_version(self) -> int:
        return int(self._open().execute("PRAGMA data_version").fetchone()[0])

    def _load(self) -> None:
        """(Re)build the in-memory indexes from the file."""
        conn = self._open()
        with self._lock:
            hashes = HashIndex(self.exact_limit)
            rows = conn.execute("SELECT ref_id, hash FROM ref_hashes ORDER BY ref_id, window").fetchall()
            by_ref: dict[int, list[int]] = {}
            for ref_id, h in rows:
                by_ref.setdefault(ref_id, []).append(h & 0xFFFFFFFFFFFFFFFF)
            if by_ref:
                hashes.add_many(np.fromiter(by_ref, dtype=np.int64), list(by_ref.values()))
            self._hashes = hashes
            self._vectors = {}
            self._version = self._data_version()
            self.loads += 1

    def _refresh(self) -> None:
        """Reload when another connection (the CLI, another worker) changed the file."""
        if self._conn is None:
            if not self.path.exists():
                return
            self._open()
            self._load()
            return
        if self._data_version() != self._version:
            self._load()

    def _vector_index(self, model_key: str) -> VectorIndex:
        index = self._vectors.get(model_key)
        if index is None:
            index = VectorIndex(self.exact_limit)
            if self._conn is not None:
                rows = self._conn.execute(
                    "SELECT id, embedding FROM refs WHERE model_key = ?", (model_key,)
                ).fetchall()
                if rows:
                    ids = np.array([r[0] for r in rows], dtype=np.int64)
                    emb = np.stack([np.frombuffer(r[1], dtype=np.float16) for r in rows]).astype(np.float32)
                    index.add_many(ids, project(emb))
            self._vectors[model_key] = index
        return index

    # changes ------------------------------------------------------------------------------
    def add(
        self,
        *,
        hashes: Sequence[int],
        embedding: np.ndarray,
        model_key: str,
        sha256: str,
        size: tuple[int, int],
        source: str,
        kind: str = "catalogue",
        label: str | None = None,
        listing_id: str | None = None,
        seller_id: str | None = None,
    ) -> Reference:
        """Store a reference photo (its window hashes, embedding and description).

        Raises:
            GalleryError: an unknown ``kind`` or a file that cannot be written.
        """
        if kind not in KINDS:
            raise GalleryError(f"Unknown kind {kind!r}. Allowed: {', '.join(KINDS)}.")
        emb = unit(embedding)[0].astype(np.float16)
        now = time.time()
        try:
            with self._tx() as conn:
                cur = conn.execute(
                    "INSERT INTO refs (kind, source, label, listing_id, seller_id, sha256, width, height, "
                    "added_at, model_key, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        kind,
                        source,
                        label,
                        listing_id,
                        seller_id,
                        sha256,
                        size[0],
                        size[1],
                        now,
                        model_key,
                        emb.tobytes(),
                    ),
                )
                ref_id = int(cur.lastrowid or 0)
                conn.executemany(
                    "INSERT INTO ref_hashes (ref_id, window, hash) VALUES (?, ?, ?)",
                    [(ref_id, w, to_signed(h)) for w, h in enumerate(hashes)],
                )
                self._hashes.add_many(np.array([ref_id]), [list(hashes)])
                if model_key in self._vectors:
                    self._vectors[model_key].add_many(
                        np.array([ref_id]), project(emb[None].astype(np.float32))
                    )
        except sqlite3.Error as exc:
            raise GalleryError(f"{self.path}: the reference could not be stored ({exc}).") from None
        return Reference(
            ref_id, kind, source, label, listing_id, seller_id, sha256, size[0], size[1], now, model_key
        )

    def remove(self, ref_id: int) -> bool:
        """Delete a reference and its sightings; whether it existed."""
        if self._conn is None and not self.path.exists():
            return False
        with self._tx() as conn:
            gone = conn.execute("DELETE FROM refs WHERE id = ?", (ref_id,)).rowcount > 0
            if gone:
                self._hashes.remove(ref_id)
                for index in self._vectors.values():
                    index.remove(ref_id)
        return gone

    def record_sighting(
        self, ref_id: int, *, image_sha256: str, listing_id: str | None, seller_id: str | None
    ) -> None:
        """Note that a scored photo of a listing matched ``ref_id``."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sightings (ref_id, listing_id, seller_id, image_sha256, seen_at) VALUES (?, ?, ?, ?, ?)",
                (ref_id, listing_id, seller_id, image_sha256, time.time()),
            )

    # reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._hashes)

    def get(self, ref_id: int) -> Reference | None:
        """One reference by id."""
        with self._lock:
            if self._conn is None:
                self._refresh()
            if self._conn is None:
                return None
            row = self._conn.execute(f"SELECT {_REF_COLUMNS} FROM refs WHERE id = ?", (ref_id,)).fetchone()
        return None if row is None else _ref(row)

    def references(self, *, kind: str | None = None, limit: int = 100, offset: int = 0) -> list[Reference]:
        """References, newest first."""
        with self._lock:
            self._refresh()
            if self._conn is None:
                return []
            where, args = ("WHERE kind = ?", [kind]) if kind else ("", [])
            rows = self._conn.execute(
                f"SELECT {_REF_COLUMNS} FROM refs {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [_ref(r) for r in rows]

    def find_sha256(self, sha256: str) -> Reference | None:
        """A reference with exactly these bytes, if any."""
        with self._lock:
            self._refresh()
            if self._conn is None:
                return None
            row = self._conn.execute(
                f"SELECT {_REF_COLUMNS} FROM refs WHERE sha256 = ? LIMIT 1", (sha256,)
            ).fetchone()
        return None if row is None else _ref(row)

    def _reach(self, ref: Reference) -> tuple[int, int]:
        assert self._conn is not None
        listings, sellers = self._conn.execute(
            "SELECT COUNT(DISTINCT listing_id), COUNT(DISTINCT seller_id) FROM ("
            "SELECT listing_id, seller_id FROM sightings WHERE ref_id = ? "
            "UNION ALL SELECT listing_id, seller_id FROM refs WHERE id = ?)",
            (ref.id, ref.id),
        ).fetchone()
        return int(listings), int(sellers)

    def match(
        self,
        query_hash: int,
        embedding: np.ndarray,
        *,
        model_key: str,
        exclude_listing: str | None = None,
    ) -> Match | None:
        """The best reference this photo is a copy of, or ``None``.

        Args:
            query_hash: The photo's whole-photo hash (:func:`serving.gallery.phash.phash`).
            embedding: The photo's ``embedding`` output ``(D,)``.
            model_key: Which model made ``embedding`` (references made by another are matched by
                hash alone).
            exclude_listing: A listing id whose own photos do not count (the same listing scored again).
        """
        with self._lock:
            self._refresh()
            if self._conn is None or len(self._hashes) == 0:
                return None
            vectors = self._vector_index(model_key)
            q = unit(embedding)[0]
            cand_ids, _ = vectors.search(project(q[None])[0], TOP_K)
            by_hash = self._hashes.nearest(query_hash, HASH_LOOSE, candidates=cand_ids)
            ids = sorted(set(cand_ids.tolist()) | set(by_hash))
            if not ids:
                return None
            marks = ",".join("?" * len(ids))
            rows = self._conn.execute(
                f"SELECT {_REF_COLUMNS}, embedding FROM refs WHERE id IN ({marks})", ids
            ).fetchall()
            best: tuple[tuple[int, float], Match] | None = None
            for row in rows:
                ref = _ref(row[:-1])
                if (
                    exclude_listing is not None
                    and ref.kind == "listing"
                    and ref.listing_id == exclude_listing
                ):
                    continue
                cos = None
                if ref.model_key == model_key:
                    cos = float(np.frombuffer(row[-1], dtype=np.float16).astype(np.float32) @ q)
                dist = by_hash.get(ref.id)
                how = _rule(dist, cos)
                if how is None:
                    continue
                rank = (dist if dist is not None else 64, -(cos or 0.0))
                if best is None or rank < best[0]:
                    best = (rank, Match(ref, cos, dist, how, 0, 0))
            if best is None:
                return None
            m = best[1]
            listings, sellers = self._reach(m.reference)
            return Match(m.reference, m.similarity, m.hash_distance, m.matched_by, listings, sellers)

    def clusters(self, *, min_listings: int = 2, limit: int = 100) -> list[Cluster]:
        """References seen in at least ``min_listings`` distinct listings, most listings first."""
        with self._lock:
            self._refresh()
            if self._conn is None:
                return []
            rows = self._conn.execute(
                "SELECT ref_id, COUNT(DISTINCT listing_id) AS n, COUNT(*), MIN(seen_at), MAX(seen_at) FROM ("
                "SELECT ref_id, listing_id, seen_at FROM sightings "
                "UNION ALL SELECT id, listing_id, added_at FROM refs WHERE listing_id IS NOT NULL) "
                "GROUP BY ref_id HAVING n >= ? ORDER BY n DESC, ref_id LIMIT ?",
                (min_listings, limit),
            ).fetchall()
            out = []
            for ref_id, _, count, first, last in rows:
                ref = self.get(int(ref_id))
                if ref is None:
                    continue
                members = self._conn.execute(
                    "SELECT DISTINCT listing_id, seller_id FROM ("
                    "SELECT listing_id, seller_id FROM sightings WHERE ref_id = ? "
                    "UNION ALL SELECT listing_id, seller_id FROM refs WHERE id = ?)",
                    (ref_id, ref_id),
                ).fetchall()
                listings = sorted({m[0] for m in members if m[0] is not None})
                sellers = sorted({m[1] for m in members if m[1] is not None})
                out.append(Cluster(ref, listings, sellers, int(count), float(first), float(last)))
        return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _rule(dist: int | None, cos: float | None) -> str | None:
    """How a reference matches, by the module's rule; ``None`` when it does not."""
    if dist is not None and dist <= HASH_STRICT and (cos is None or cos >= COS_FLOOR):
        return "hash" if cos is None or cos < COS_LOOSE else "hash+embedding"
    if dist is not None and dist <= HASH_LOOSE and cos is not None and cos >= COS_LOOSE:
        return "hash+embedding"
    if cos is not None and cos >= COS_STRICT:
        return "embedding"
    return None
