"""Splits: deterministic, stratified, grouped by item or near-duplicate cluster, presets kept."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from factories import jpeg_bytes
from PIL import Image, ImageOps
from typer.testing import CliRunner

from authlens.cli import app
from training.data.dedupe import hash_files, near_duplicate_pairs
from training.data.manifest import Record, load_manifest
from training.data.split import split_counts, split_records


def _items(n_items: int, photos: int = 3) -> list[Record]:
    """Records of named items (no files needed: grouping by item_id does not open images)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n_items):
        label = "counterfeit" if i % 3 else "genuine"
        for k in range(int(rng.integers(1, photos + 1))):
            out.append(Record(Path(f"/data/set/img/{i:04d}_{k}.jpg"), label, item_id=f"item{i}"))
    return out


def test_items_never_span_splits_and_labels_are_stratified() -> None:
    records = _items(300)
    out = split_records(records, val_fraction=0.15, test_fraction=0.15, seed=0)
    assert [r.file for r in out] == [r.file for r in records]
    by_item: dict[str, set[str]] = {}
    for r in out:
        by_item.setdefault(r.item_id or "", set()).add(r.split or "")
    assert all(len(s) == 1 for s in by_item.values())
    counts = split_counts(out)
    totals = Counter(r.label for r in records)
    for split, share in (("val", 0.15), ("test", 0.15), ("train", 0.7)):
        for label, n in totals.items():
            assert abs(counts[split][label] - share * n) <= 3, (split, label, counts)


def test_deterministic_order_free_location_free_and_seeded() -> None:
    records = _items(120)
    a = split_records(records, val_fraction=0.2, test_fraction=0.1, seed=3)
    b = split_records(list(reversed(records)), val_fraction=0.2, test_fraction=0.1, seed=3)
    assert [r.split for r in a] == [r.split for r in reversed(b)]
    moved = [
        Record(Path("/elsewhere") / r.file.relative_to("/data"), r.label, item_id=r.item_id) for r in records
    ]
    assert [r.split for r in split_records(moved, val_fraction=0.2, test_fraction=0.1, seed=3)] == [
        r.split for r in a
    ]
    c = split_records(records, val_fraction=0.2, test_fraction=0.1, seed=4)
    assert [r.split for r in a] != [r.split for r in c]


def test_existing_splits_are_kept_and_pull_their_group() -> None:
    records = _items(60)
    first = records[0]
    records[0] = Record(first.file, first.label, item_id=first.item_id, split="test")
    out = split_records(records, val_fraction=0.15, test_fraction=0.0, seed=0)
    assert out[0].split == "test"
    assert {r.split for r in out if r.item_id == first.item_id} == {"test"}
    assert {r.split for r in out if r.item_id != first.item_id} <= {"train", "val"}


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.0)])
def test_bad_fractions_are_refused(val: float, test: float) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        split_records(_items(3), val_fraction=val, test_fraction=test, seed=0)


def _save(img: Image.Image, path: Path, quality: int = 90) -> None:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    path.write_bytes(buf.getvalue())


def test_near_duplicates_without_item_ids_stay_together(tmp_path: Path) -> None:
    base = Image.open(io.BytesIO(jpeg_bytes(320, 240, seed=1)))
    _save(base, tmp_path / "a.jpg")
    _save(base.resize((200, 150)), tmp_path / "a_small.jpg", quality=60)
    _save(ImageOps.mirror(base), tmp_path / "a_mirror.jpg")
    _save(base.rotate(90, expand=True), tmp_path / "a_turned.jpg")
    rng = np.random.default_rng(5)
    for k in range(24):  # unrelated photos: smooth random blobs
        low = rng.random((4, 4, 3)) * 255
        img = Image.fromarray(low.astype(np.uint8)).resize((320, 240), Image.Resampling.BICUBIC)
        _save(img, tmp_path / f"other_{k}.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    names = sorted(p.name for p in tmp_path.iterdir())
    records = [Record(tmp_path / n, "genuine" if i % 2 else "counterfeit") for i, n in enumerate(names)]
    hashes, ok = hash_files([r.file for r in records])
    assert ok.sum() == len(records) - 1  # broken.jpg cannot be hashed and is left alone
    found = {(names[p.i], names[p.j]) for p in near_duplicate_pairs(hashes, mask=ok)}
    copies = {n for n in names if n.startswith("a")}
    assert {("a.jpg", c) for c in copies - {"a.jpg"}} <= found
    assert all((x in copies) == (y in copies) for x, y in found)
    for seed in range(4):
        out = split_records(records, val_fraction=0.3, test_fraction=0.3, seed=seed)
        dup_splits = {r.split for r in out if r.file.name.startswith("a")}
        assert len(dup_splits) == 1, f"seed {seed}: copies of one photo in {dup_splits}"
        assert next(r for r in out if r.file.name == "broken.jpg").split in ("train", "val", "test")


def test_sneakers_split_has_no_near_duplicates_across_splits(sneakers_dir: Path) -> None:
    records = load_manifest(sneakers_dir)
    hashes, ok = hash_files([r.file for r in records])
    assert ok.all()
    pairs = near_duplicate_pairs(hashes, mask=ok)
    assert len(pairs) >= 10  # the set still holds re-encoded, mirrored and turned copies
    out = split_records(records, val_fraction=0.15, test_fraction=0.15, seed=0)
    crossing = [(out[p.i].file.name, out[p.j].file.name) for p in pairs if out[p.i].split != out[p.j].split]
    assert crossing == []
    counts = split_counts(out)
    assert (
        abs(counts["val"]["genuine"] - 0.15 * 510) <= 2
        and abs(counts["test"]["counterfeit"] - 0.15 * 589) <= 2
    )
    by_name = {r.file.name: r.split for r in out}
    assert by_name["j1_b6638a21ee16.jpg"] == by_name["j1_57a009c2220b.jpg"]  # a mirrored copy


def test_cli_split_writes_a_manifest(tmp_path: Path) -> None:
    for label in ("genuine", "counterfeit"):
        (tmp_path / "set" / label).mkdir(parents=True)
        for k in range(6):
            (tmp_path / "set" / label / f"{k}.jpg").write_bytes(jpeg_bytes(64, 48, seed=k + 10 * len(label)))
    result = CliRunner().invoke(
        app, ["data", "split", str(tmp_path / "set"), "--out", str(tmp_path / "s.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "groups" in result.output
    out = load_manifest(tmp_path / "s.csv")
    assert len(out) == 12 and {r.split for r in out} <= {"train", "val", "test"}
    result = CliRunner().invoke(
        app, ["data", "split", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 2 and "no such manifest" in result.output


def test_one_photo_under_two_item_ids_stays_in_one_split(tmp_path: Path) -> None:
    records = []
    for i in range(40):
        path = tmp_path / f"{i:03d}.jpg"
        path.write_bytes(jpeg_bytes(64, 48, seed=i))
        records.append(Record(path, "counterfeit" if i % 2 else "genuine", item_id=f"item{i}"))
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "007.jpg").read_bytes())
    records.append(Record(tmp_path / "copy.jpg", "counterfeit", item_id="another-item"))
    for seed in range(8):
        out = split_records(records, val_fraction=0.25, test_fraction=0.25, seed=seed)
        assert out[7].split == out[-1].split
