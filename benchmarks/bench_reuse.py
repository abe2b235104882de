"""Reuse detection, measured: how well the reference gallery recognises edited copies of its photos,
how often it mistakes a photo of another item of the same model for one, and how long a lookup takes.

Usage: ``python benchmarks/bench_reuse.py --bundle BUNDLE [--n 80] [--negatives 400] [--out reuse.json]
[--sizes 10000,1000000]``

* **Copies** of each gallery photo under each edit type (:data:`EDITS`: re-encoding, resizing,
  cropping, a watermark, small edits, all of them together) are looked up in a gallery of the
  originals through :meth:`serving.gallery.store.Gallery.match`, the server's rule. Recall: the
  share of copies matched to their own original; precision: the share of matches (copies and
  distinct photos together) that name the right original.
* **Distinct items of the same model**: photos that are *not* in the gallery but show the same
  model: for the real sneakers, the other photos of the data set (all Nike sneakers); for the
  synthetic goods, the other item of each design (items ``2k`` and ``2k + 1`` share a design) in
  another photo, and in the same pose and scene (only the tells differ: the hardest case).
* **Lookup time** per photo with 10k and 1M references, simulated with random hashes and random
  unit embeddings, a planted copy found each time (the 1M case takes the approximate path):
  the in-memory indexes alone (``--sizes``), and :meth:`Gallery.match` end to end on a real
  SQLite file (``--match-sizes``); plus what hashing adds to decoding a photo.

The synthetic photos need ``training`` (torch is not imported); run it from the repository root.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.gallery.index import PROJECTED_DIM, HashIndex, VectorIndex, unit  # noqa: E402
from serving.gallery.phash import REFERENCE_WINDOWS  # noqa: E402
from serving.gallery.store import Gallery  # noqa: E402
from serving.predictor import Predictor  # noqa: E402

SNEAKERS = ROOT.parent / "shared" / "data" / "sneakers-nike"


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for name in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def reencode(img: Image.Image, rng: np.random.Generator) -> bytes:
    """JPEG again at quality 35 to 70."""
    return _jpeg(img, int(rng.integers(35, 71)))


def resize(img: Image.Image, rng: np.random.Generator) -> bytes:
    """Down to 30-60 % of each side (a marketplace thumbnail), JPEG 85."""
    f = rng.uniform(0.3, 0.6)
    return _jpeg(
        img.resize((max(8, round(img.width * f)), max(8, round(img.height * f))), Image.Resampling.LANCZOS),
        85,
    )


def crop(img: Image.Image, rng: np.random.Generator) -> bytes:
    """Keep 75-92 % of each side at a random place, JPEG 90."""
    fw, fh = rng.uniform(0.75, 0.92, size=2)
    w, h = round(img.width * fw), round(img.height * fh)
    x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
    return _jpeg(img.crop((x, y, x + w, y + h)), 90)


def watermark(img: Image.Image, rng: np.random.Generator) -> bytes:
    """A seller's handle across the middle at 35-55 % opacity and a corner badge, JPEG 85."""
    base = img.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    alpha = int(rng.uniform(0.35, 0.55) * 255)
    font = _font(max(10, base.width // 12))
    text = f"@shop_{int(rng.integers(100, 999))} SALE"
    d.text((base.width * 0.12, base.height * 0.45), text, fill=(255, 255, 255, alpha), font=font)
    s = base.width // 7
    d.rectangle((base.width - s - 6, 6, base.width - 6, 6 + s // 2), fill=(200, 20, 20, 220))
    return _jpeg(Image.alpha_composite(base, layer), 85)


def small_edit(img: Image.Image, rng: np.random.Generator) -> bytes:
    """Brightness, contrast and saturation within +-12 %, a sticker over 3 % of the photo, JPEG 85."""
    out = ImageEnhance.Brightness(img).enhance(rng.uniform(0.88, 1.12))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.88, 1.12))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.88, 1.12))
    d = ImageDraw.Draw(out)
    s = round(np.sqrt(0.03) * min(out.size))
    x, y = int(rng.integers(0, out.width - s)), int(rng.integers(0, out.height - s))
    d.ellipse((x, y, x + s, y + s), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return _jpeg(out, 85)


def combined(img: Image.Image, rng: np.random.Generator) -> bytes:
    """Crop, then resize, watermark and re-encode: a copy that went through a reseller's tools."""
    steps: list[Callable[[Image.Image, np.random.Generator], bytes]] = [crop, resize, watermark, reencode]
    data = b""
    for step in steps:
        data = step(img, rng)
        img = Image.open(io.BytesIO(data)).convert("RGB")
    return data


EDITS: dict[str, Callable[[Image.Image, np.random.Generator], bytes]] = {
    "reencode": reencode,
    "resize": resize,
    "crop": crop,
    "watermark": watermark,
    "small_edit": small_edit,
    "combined": combined,
}


def sneaker_photos(n: int, negatives: int, seed: int) -> tuple[list[Image.Image], list[Image.Image]]:
    """``n`` gallery photos and ``negatives`` other photos of the real sneakers (distinct files;
    the data set's near-identical copies were already reduced to one photo each)."""
    files = sorted(SNEAKERS.glob("*/*.jpg"))
    order = np.random.default_rng(seed).permutation(len(files))
    pick = [files[i] for i in order[: min(len(files), n + negatives)]]
    imgs = [Image.open(f).convert("RGB") for f in pick]
    return imgs[:n], imgs[n:]


def synthetic_photos(
    n: int, seed: int, size: int = 384
) -> tuple[list[Image.Image], list[Image.Image], list[Image.Image]]:
    """Gallery photos of items ``2k``, photos of their twin items ``2k + 1`` in another pose and
    scene, and in the same pose and scene."""
    from training.data.synth import synth_photo

    gallery, other_pose, same_pose = [], [], []
    for k in range(n):
        gallery.append(Image.fromarray(synth_photo(seed, 2 * k, 2 * k, size).pixels))
        other_pose.append(Image.fromarray(synth_photo(seed, 100_000 + 2 * k, 2 * k + 1, size).pixels))
        same_pose.append(Image.fromarray(synth_photo(seed, 2 * k, 2 * k + 1, size).pixels))
    return gallery, other_pose, same_pose


def _embed(predictor: Predictor, datas: list[bytes]) -> tuple[list[Any], list[Any]]:
    prepared = [predictor.prepare(d) for d in datas]
    raws = []
    for i in range(0, len(prepared), 16):
        raws.extend(predictor.infer(np.stack([p.pixels for p in prepared[i : i + 16]])))
    return prepared, raws


def build_gallery(path: Path, predictor: Predictor, prepared: list[Any], raws: list[Any]) -> list[int]:
    """A gallery of embedded photos; the reference ids in order."""
    gallery = Gallery(path)
    ids = []
    for i, (p, r) in enumerate(zip(prepared, raws, strict=True)):
        ref = gallery.add(
            hashes=p.reference_hashes,
            embedding=predictor.gallery_vector(r.embedding),
            model_key=predictor.embedding_key,
            sha256=p.sha256,
            size=p.original_size,
            source=f"catalogue photo {i}",
        )
        ids.append(ref.id)
    gallery.close()
    return ids


def lookups(
    predictor: Predictor, gallery: Gallery, prepared: list[Any], raws: list[Any]
) -> list[tuple[int | None, int | None, float | None, str | None]]:
    """``(matched reference id, hash distance, cosine, matched_by)`` per embedded query photo."""
    out = []
    for p, r in zip(prepared, raws, strict=True):
        m = gallery.match(p.phash, predictor.gallery_vector(r.embedding), model_key=predictor.embedding_key)
        out.append(
            (None, None, None, None)
            if m is None
            else (m.reference.id, m.hash_distance, m.similarity, m.matched_by)
        )
    return out


def signals(
    predictor: Predictor, refs: tuple[list[Any], list[Any]], queries: tuple[list[Any], list[Any]]
) -> list[tuple[int, float]]:
    """Raw ``(smallest window distance, cosine)`` of query ``q`` to reference ``q % len(refs)``
    (for copies: its own original; for distinct photos: an arbitrary other photo)."""
    rp, rr = refs
    out = []
    for q, (p, r) in enumerate(zip(*queries, strict=True)):
        j = q % len(rp)
        d = min(bin(h ^ p.phash).count("1") for h in rp[j].reference_hashes)
        a, b = predictor.gallery_vector(r.embedding), predictor.gallery_vector(rr[j].embedding)
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        out.append((d, float(a @ b)))
    return out


def evaluate(
    predictor: Predictor,
    name: str,
    refs: list[Image.Image],
    negatives: dict[str, list[Image.Image]],
    seed: int,
    work: Path,
) -> dict[str, Any]:
    """Precision and recall per edit type and false-match rates for one photo set.

    Every photo is decoded and embedded once (gallery photos as JPEG 92, distinct photos as JPEG 85).
    """
    path = work / f"{name}.sqlite"
    embedded_refs = _embed(predictor, [_jpeg(p, 92) for p in refs])
    ids = build_gallery(path, predictor, *embedded_refs)
    gallery = Gallery(path)
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"gallery": len(refs), "edits": {}, "distinct": {}, "signals": {}}
    false_matches = 0
    t = time.perf_counter()
    n_lookups = 0
    for kind, photos in negatives.items():
        queries = _embed(predictor, [_jpeg(p, 85) for p in photos])
        found = lookups(predictor, gallery, *queries)
        n_lookups += len(found)
        wrong = sum(1 for m in found if m[0] is not None)
        false_matches += wrong
        result["distinct"][kind] = {
            "photos": len(photos),
            "false_matches": wrong,
            "rate": wrong / max(1, len(photos)),
            # no false match in n photos: the rate is below 3/n with 95 % confidence
            "rate_95_upper": (3 / len(photos)) if wrong == 0 and photos else None,
            "matched_by": {
                how: sum(1 for m in found if m[3] == how) for how in ("hash", "hash+embedding", "embedding")
            },
        }
        result["signals"][f"distinct:{kind}"] = _summary(signals(predictor, embedded_refs, queries))
    n_neg = sum(len(p) for p in negatives.values())
    for edit, fn in EDITS.items():
        copies = [fn(img, rng) for img in refs]
        queries = _embed(predictor, copies)
        found = lookups(predictor, gallery, *queries)
        n_lookups += len(found)
        right = sum(1 for m, ref in zip(found, ids, strict=True) if m[0] == ref)
        matched = sum(1 for m in found if m[0] is not None)
        # precision over this edit's copies plus the distinct photos (whose matches are all false)
        precision = right / (matched + false_matches) if matched + false_matches else 1.0
        result["edits"][edit] = {
            "copies": len(copies),
            "recall": right / len(copies),
            "precision": precision,
            "wrong_reference": matched - right,
            "matched_by": {
                how: sum(1 for m in found if m[0] is not None and m[3] == how)
                for how in ("hash", "hash+embedding", "embedding")
            },
        }
        result["signals"][edit] = _summary(signals(predictor, embedded_refs, queries))
    result["false_match_rate"] = false_matches / max(1, n_neg)
    result["distinct_photos"] = n_neg
    result["decode_embed_lookup_s"] = round(time.perf_counter() - t, 1)
    result["lookups"] = n_lookups
    gallery.close()
    return result


def _summary(raw: list[tuple[int, float]]) -> dict[str, Any]:
    d = np.array([r[0] for r in raw])
    c = np.array([r[1] for r in raw])
    return {
        "hash_distance": {
            "min": int(d.min()),
            "p10": float(np.percentile(d, 10)),
            "median": float(np.median(d)),
            "p90": float(np.percentile(d, 90)),
            "max": int(d.max()),
        },
        "cosine": {
            "min": round(float(c.min()), 4),
            "p10": round(float(np.percentile(c, 10)), 4),
            "median": round(float(np.median(c)), 4),
            "p90": round(float(np.percentile(c, 90)), 4),
            "max": round(float(c.max()), 4),
        },
    }


def lookup_time(
    n: int, *, dim: int, grown: bool = False, queries: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Milliseconds per lookup (vector search, then the hash scan) among ``n`` simulated references.

    Random hashes and random unit embeddings; each query is a planted copy of a stored reference
    (its embedding plus noise, cosine about 0.95 after projection), found or not among the candidates.
    The vectors are indexed at once, as when a server opens the gallery (beyond the exact limit the
    IVF index gets about sqrt(n) lists), or with ``grown`` 50,000 at a time, as a gallery growing in
    a running server (the IVF lists are trained once, when it passes the exact limit).
    """
    rng = np.random.default_rng(seed)
    hashes = HashIndex()
    vectors = VectorIndex()
    targets = rng.choice(n, size=queries, replace=False)
    kept: dict[int, np.ndarray] = {}
    pending: list[np.ndarray] = []
    t = time.perf_counter()
    chunk = 50_000
    for start in range(0, n, chunk):
        ids = np.arange(start, min(n, start + chunk), dtype=np.int64)
        hashes.add_many(
            ids, rng.integers(0, 2**63, size=(len(ids), len(REFERENCE_WINDOWS)), dtype=np.uint64).tolist()
        )
        # projections of random embeddings are uniform on the sphere: drawn there directly
        proj = unit(rng.normal(size=(len(ids), PROJECTED_DIM)).astype(np.float32))
        if grown:
            vectors.add_many(ids, proj)
        else:
            pending.append(proj)
        for j in targets[(targets >= start) & (targets < start + len(ids))]:
            kept[int(j)] = proj[int(j) - start]
    if pending:
        vectors.add_many(np.arange(n, dtype=np.int64), np.concatenate(pending))
        pending.clear()
    build = time.perf_counter() - t
    times, found = [], 0
    for j in targets.tolist():
        q = kept[j] + rng.normal(scale=0.02, size=kept[j].shape).astype(np.float32)
        q /= np.linalg.norm(q)
        t = time.perf_counter()
        cand, _ = vectors.search(q, 16)
        hashes.nearest(int(rng.integers(0, 2**63)), 16, candidates=cand)
        times.append(time.perf_counter() - t)
        found += int(j in set(cand.tolist()))
    ms = np.array(times) * 1000
    return {
        "references": n,
        "index": vectors.kind,
        "grown": grown,
        "build_s": round(build, 1),
        "lookup_ms_p50": round(float(np.median(ms)), 2),
        "lookup_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "planted_copy_found": found / queries,
    }


def match_time(n: int, *, dim: int, work: Path, queries: int = 200, seed: int = 0) -> dict[str, Any]:
    """Milliseconds per :meth:`Gallery.match` (indexes, SQLite rows of the candidates, the
    sightings count) in a real gallery file of ``n`` simulated references (random window hashes,
    random float16 embeddings of the bundle's size), written in one transaction; each query is a
    planted copy of a stored reference (3 bits of its whole-photo hash flipped, its embedding plus
    noise) and must come back as that reference."""
    import sqlite3

    from serving.gallery.phash import to_signed
    from serving.gallery.store import _SCHEMA

    rng = np.random.default_rng(seed)
    path = work / f"sim-{n}.sqlite"
    hashes = rng.integers(0, 2**63, size=(n, len(REFERENCE_WINDOWS)), dtype=np.uint64)
    t = time.perf_counter()
    with sqlite3.connect(path) as conn:
        conn.executescript(_SCHEMA)
        for start in range(0, n, 10_000):
            stop = min(n, start + 10_000)
            emb = unit(rng.normal(size=(stop - start, dim)).astype(np.float32)).astype(np.float16)
            conn.executemany(
                "INSERT INTO refs (id, kind, source, sha256, width, height, added_at, model_key, embedding) "
                "VALUES (?, 'catalogue', 'simulated', ?, 640, 640, 0, 'sim', ?)",
                [(i + 1, f"{i:064x}", emb[i - start].tobytes()) for i in range(start, stop)],
            )
            conn.executemany(
                "INSERT INTO ref_hashes (ref_id, window, hash) VALUES (?, ?, ?)",
                [
                    (i + 1, w, to_signed(int(h)))
                    for i in range(start, stop)
                    for w, h in enumerate(hashes[i].tolist())
                ],
            )
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    gallery = Gallery(path)
    gallery.match(0, np.ones(dim, dtype=np.float32), model_key="sim")  # loads the vector index
    load_s = time.perf_counter() - t
    targets = rng.choice(n, size=queries, replace=False)
    with sqlite3.connect(path) as conn:
        stored = {
            int(i): np.frombuffer(e, dtype=np.float16).astype(np.float32)
            for i, e in conn.execute(
                f"SELECT id, embedding FROM refs WHERE id IN ({','.join(str(int(j) + 1) for j in targets)})"
            )
        }
    times, right = [], 0
    for j in targets.tolist():
        flips = rng.choice(64, size=3, replace=False)
        q_hash = int(hashes[j, 0]) ^ int(sum(1 << int(b) for b in flips))
        q = stored[j + 1] + rng.normal(scale=0.3 / np.sqrt(dim), size=dim).astype(np.float32)
        t = time.perf_counter()
        m = gallery.match(q_hash, q, model_key="sim")
        times.append(time.perf_counter() - t)
        right += int(m is not None and m.reference.id == j + 1)
    gallery.close()
    ms = np.array(times) * 1000
    return {
        "references": n,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "write_s": round(write_s, 1),
        "open_and_index_s": round(load_s, 1),
        "match_ms_p50": round(float(np.median(ms)), 2),
        "match_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "planted_copy_matched": right / queries,
    }


def hashing_cost(predictor: Predictor, reps: int = 30) -> dict[str, Any]:
    """Milliseconds :meth:`Predictor.prepare` spends per photo with and without the query hash
    (a 640x640 sneaker JPEG and a 1600x1200 one), and computing a reference's window hashes."""
    files = sorted(SNEAKERS.glob("*/*.jpg"))[:1]
    small = files[0].read_bytes()
    big = _jpeg(Image.open(files[0]).convert("RGB").resize((1600, 1200), Image.Resampling.BILINEAR), 90)
    out: dict[str, Any] = {}
    for name, data in (("640x640", small), ("1600x1200", big)):
        row = {}
        for hashed in (False, True):
            predictor.hash_photos = hashed
            predictor.prepare(data)
            t = time.perf_counter()
            for _ in range(reps):
                p = predictor.prepare(data)
            row["with_hash_ms" if hashed else "without_hash_ms"] = round(
                (time.perf_counter() - t) / reps * 1000, 2
            )
        t = time.perf_counter()
        for _ in range(reps):
            p.reference_hashes  # noqa: B018
        row["reference_window_hashes_ms"] = round((time.perf_counter() - t) / reps * 1000, 2)
        out[name] = row
    predictor.hash_photos = True
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--n", type=int, default=80, help="Gallery photos per set.")
    ap.add_argument(
        "--negatives", type=int, default=400, help="Other sneaker photos looked up (distinct items)."
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="10000,1000000", help="Simulated gallery sizes for lookup time.")
    ap.add_argument(
        "--match-sizes", default="10000", help="Real gallery files of simulated references timed end to end."
    )
    ap.add_argument(
        "--grown",
        action="store_true",
        help="Index the simulated vectors 50,000 at a time (a growing gallery).",
    )
    ap.add_argument("--skip-quality", action="store_true", help="Only the lookup times.")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    predictor = Predictor.load(args.bundle, max_pixels=50_000_000)
    predictor.hash_photos = True
    report: dict[str, Any] = {
        "bundle": predictor.model_ref.model_dump(),
        "embedding_key": predictor.embedding_key,
    }
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            refs, others = sneaker_photos(args.n, args.negatives, args.seed)
            report["sneakers"] = evaluate(
                predictor, "sneakers", refs, {"other_photos": others}, args.seed, work
            )
            print(json.dumps(report["sneakers"], indent=1), file=sys.stderr)
            g, other_pose, same_pose = synthetic_photos(args.n, args.seed)
            report["synthetic"] = evaluate(
                predictor,
                "synthetic",
                g,
                {"twin_other_pose": other_pose, "twin_same_pose": same_pose},
                args.seed,
                work,
            )
            print(json.dumps(report["synthetic"], indent=1), file=sys.stderr)
    dim = predictor.manifest.embedding_dim
    report["hashing"] = hashing_cost(predictor)
    print(json.dumps(report["hashing"], indent=1), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        report["match"] = [
            match_time(int(n), dim=dim, work=Path(tmp)) for n in args.match_sizes.split(",") if n
        ]
    print(json.dumps(report["match"], indent=1), file=sys.stderr)
    report["lookup"] = [lookup_time(int(n), dim=dim, grown=args.grown) for n in args.sizes.split(",") if n]
    print(json.dumps(report["lookup"], indent=1), file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
