"""The reference gallery without a server: hashes, storage, matching rule, both index paths."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from galleryutil import bundle_with_photo_reference
from PIL import Image, ImageDraw

from serving.gallery.index import HashIndex, VectorIndex, project
from serving.gallery.phash import phash, window_hashes
from serving.gallery.store import Gallery, GalleryError
from serving.predictor import Predictor


def _photos(sneakers_dir: Path, n: int) -> list[Path]:
    return sorted((sneakers_dir / "genuine").glob("*.jpg"))[:n]


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_phash_is_imagehash_phash(sneakers_dir: Path) -> None:
    """Our numpy DCT hash gives imagehash's phash bits (imagehash is not a serving dependency)."""
    imagehash = pytest.importorskip("imagehash")
    differ = []
    for path in _photos(sneakers_dir, 12):
        img = Image.open(path).convert("RGB")
        small = img.resize((256, 256), Image.Resampling.BILINEAR)  # our hash reduces to 256 px first
        ours = phash(np.asarray(small))
        theirs = int(str(imagehash.phash(small.convert("L"))), 16)
        differ.append(bin(ours ^ theirs).count("1"))
    assert np.mean(differ) <= 1.0 and max(differ) <= 4, differ


def test_window_hashes_start_with_the_whole_photo(sneakers_dir: Path) -> None:
    pixels = np.asarray(Image.open(_photos(sneakers_dir, 1)[0]).convert("RGB"))
    hashes = window_hashes(pixels)
    assert len(hashes) == 29 and hashes[0] == phash(pixels) and len(set(hashes)) > 20


@pytest.fixture(scope="module")
def predictor(
    tiny_bundle_dir: Path, sneakers_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Predictor:
    bundle = bundle_with_photo_reference(
        tiny_bundle_dir, tmp_path_factory.mktemp("g") / "bundle", sneakers_dir
    )
    predictor = Predictor.load(bundle, max_pixels=10**8)
    predictor.hash_photos = True
    return predictor


def _embed(predictor: Predictor, data: bytes):
    """The photo prepared, and its gallery vector (centred embedding) in a RawOutput's place."""
    prepared = predictor.prepare(data)
    raw = predictor.infer(prepared.pixels[None])[0]
    return prepared, _Vec(predictor.gallery_vector(raw.embedding))


class _Vec:
    def __init__(self, embedding: np.ndarray) -> None:
        self.embedding = embedding


def test_add_match_remove_and_listing_rules(predictor: Predictor, sneakers_dir: Path, tmp_path: Path) -> None:
    gallery = Gallery(tmp_path / "g.sqlite")
    assert len(gallery) == 0 and not (tmp_path / "g.sqlite").exists()  # created on the first add
    key = predictor.embedding_key
    refs = []
    for i, path in enumerate(_photos(sneakers_dir, 6)):
        p, r = _embed(predictor, path.read_bytes())
        kind, listing = ("listing", "L1") if i == 5 else ("catalogue", None)
        refs.append(
            gallery.add(
                hashes=p.reference_hashes,
                embedding=r.embedding,
                model_key=key,
                sha256=p.sha256,
                size=p.original_size,
                source=f"src {i}",
                kind=kind,
                listing_id=listing,
            )
        )
    assert len(gallery) == 6
    # a re-encoded, smaller, watermarked copy of photo 2 matches photo 2
    img = Image.open(_photos(sneakers_dir, 6)[2]).convert("RGB").resize((320, 320))
    ImageDraw.Draw(img).text((40, 150), "@reseller SALE", fill=(255, 255, 255))
    p, r = _embed(predictor, _jpeg(img, 60))
    m = gallery.match(p.phash, r.embedding, model_key=key)
    assert m is not None and m.reference.id == refs[2].id and m.reference.source == "src 2"
    assert m.hash_distance is not None and m.hash_distance <= 8 and m.matched_by.startswith("hash")
    # another model's embeddings: matched by hash alone, no similarity
    m2 = gallery.match(p.phash, r.embedding, model_key="other:0")
    assert (
        m2 is not None and m2.reference.id == refs[2].id and m2.similarity is None and m2.matched_by == "hash"
    )
    # a listing's own photo is no reuse for that listing, but is for another one
    p5, r5 = _embed(predictor, _jpeg(Image.open(_photos(sneakers_dir, 6)[5]), 80))
    assert gallery.match(p5.phash, r5.embedding, model_key=key, exclude_listing="L1") is None
    other = gallery.match(p5.phash, r5.embedding, model_key=key, exclude_listing="L2")
    assert other is not None and other.reference.id == refs[5].id
    gallery.record_sighting(refs[5].id, image_sha256=p5.sha256, listing_id="L2", seller_id="S2")
    gallery.record_sighting(refs[5].id, image_sha256=p5.sha256, listing_id="L3", seller_id="S2")
    again = gallery.match(p5.phash, r5.embedding, model_key=key, exclude_listing="L4")
    assert again is not None and (again.listings, again.sellers) == (3, 1)
    clusters = gallery.clusters(min_listings=2)
    assert [c.reference.id for c in clusters] == [refs[5].id] and clusters[0].listings == ["L1", "L2", "L3"]
    # an unrelated photo matches nothing
    q, rq = _embed(predictor, sorted((sneakers_dir / "counterfeit").glob("*.jpg"))[0].read_bytes())
    assert gallery.match(q.phash, rq.embedding, model_key=key) is None
    assert gallery.remove(refs[2].id) and not gallery.remove(refs[2].id)
    assert gallery.match(p.phash, r.embedding, model_key=key) is None
    with pytest.raises(GalleryError, match="Allowed: catalogue, listing"):
        gallery.add(
            hashes=[0], embedding=r.embedding, model_key=key, sha256="x", size=(1, 1), source="s", kind="shop"
        )


def test_changes_by_another_process_are_seen(
    predictor: Predictor, sneakers_dir: Path, tmp_path: Path
) -> None:
    """The server's gallery reloads when the CLI (another connection) changed the file."""
    path = tmp_path / "g.sqlite"
    server_side = Gallery(path)
    cli_side = Gallery(path)
    p, r = _embed(predictor, _photos(sneakers_dir, 1)[0].read_bytes())
    ref = cli_side.add(hashes=p.reference_hashes, embedding=r.embedding, model_key=predictor.embedding_key,
                       sha256=p.sha256, size=p.original_size, source="cli")  # fmt: skip
    m = server_side.match(p.phash, r.embedding, model_key=predictor.embedding_key)
    assert m is not None and m.reference.id == ref.id
    cli_side.remove(ref.id)
    assert server_side.match(p.phash, r.embedding, model_key=predictor.embedding_key) is None
    assert server_side.loads >= 2
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM refs").fetchone()[0] == 0


def test_the_ann_path_beyond_the_exact_limit_finds_planted_copies() -> None:
    """Past exact_limit the vectors move to a faiss IVF index and only whole-photo hashes are
    scanned; a planted near-copy is still among the candidates and its windows are compared."""
    rng = np.random.default_rng(0)
    n, dim = 3000, 1280
    vectors = VectorIndex(exact_limit=1000)
    hashes = HashIndex(exact_limit=1000)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64)
    vectors.add_many(ids, project(emb))
    hashes.add_many(ids, rng.integers(0, 2**63, size=(n, 29), dtype=np.uint64).tolist())
    assert vectors.kind == "ivf" and len(vectors) == n and len(hashes) == n
    found = 0
    for j in rng.choice(n, 40, replace=False):
        q = project(emb[j : j + 1] + rng.normal(scale=0.3, size=(1, dim)).astype(np.float32))[0]
        cand, _ = vectors.search(q, 16)
        found += int(j) in cand.tolist()
        window = hashes._values[hashes._refs == j][3]  # a crop window of the reference
        near = hashes.nearest(int(window) ^ 0b111, 6, candidates=cand)
        if int(j) in cand.tolist():
            assert near.get(int(j)) == 3
    assert found >= 38
    vectors.remove(5)
    assert 5 not in vectors.search(project(emb[5:6])[0], 16)[0].tolist()
