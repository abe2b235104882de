"""Manifest reading and writing: CSV, JSONL, folders, the sneakers set, and bad rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from factories import jpeg_bytes

from training.data.manifest import (
    Box,
    ManifestError,
    Record,
    load_manifest,
    manifest_hash,
    write_manifest,
)


def _photos(folder: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(64, 48, seed=i))


def test_sneakers_manifest_loads_as_it_is(sneakers_dir: Path) -> None:
    records = load_manifest(sneakers_dir / "manifest.csv")
    assert len(records) == 1099
    assert sum(r.label == "genuine" for r in records) == 510
    first = records[0]
    assert first.file.is_absolute() and first.file.is_file()
    assert first.flags is None  # no flags column: not labelled
    assert first.extra["model"] in ("af1", "j1")
    assert first.line == 2
    assert first.boxes and all(b.name == "product" for b in first.boxes)
    assert (first.boxes[0].x0, first.boxes[0].y0, first.boxes[0].x1, first.boxes[0].y1) == (
        137,
        222,
        607,
        451,
    )
    # A folder with a manifest reads the manifest, and the hash does not depend on the spelling.
    assert manifest_hash(load_manifest(sneakers_dir)) == manifest_hash(records)


def test_csv_fields_and_roundtrip(tmp_path: Path) -> None:
    _photos(tmp_path / "img", ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "m.csv").write_text(
        "file,label,item_id,brand,category,split,flags,boxes,colour\n"
        "img/a.jpg,counterfeit,bag1,Maison,handbag,train,serial_format;logo_font,"
        '"logo_font 1 2 30 40 0.7;product 0 0 64 48",red\n'
        "img/b.jpg,Genuine,bag2,Maison,handbag,val,none,,\n"
        "img/c.jpg,genuine,,,,,,,\n"
    )
    a, b, c = load_manifest(tmp_path / "m.csv")
    assert a.file == tmp_path / "img" / "a.jpg"
    assert a.flags == ("logo_font", "serial_format")  # vocabulary order
    assert a.boxes == (Box("logo_font", 1, 2, 30, 40, 0.7), Box("product", 0, 0, 64, 48))
    assert a.extra == {"colour": "red"} and a.split == "train" and a.item_id == "bag1"
    assert b.label == "genuine" and b.flags == () and b.split == "val"
    assert c.flags is None and c.item_id is None and c.brand is None and c.line == 4

    out = write_manifest([a, b, c], tmp_path / "runs" / "x" / "split.csv")
    assert "../../img/a.jpg" in out.read_text()
    back = load_manifest(out)
    assert [(r.file, r.label, r.flags, r.boxes, r.extra, r.split, r.item_id) for r in back] == [
        (r.file, r.label, r.flags, r.boxes, r.extra, r.split, r.item_id) for r in (a, b, c)
    ]
    jl = load_manifest(write_manifest([a, b, c], tmp_path / "m2.jsonl"))
    assert [(r.flags, r.boxes) for r in jl] == [(r.flags, r.boxes) for r in (a, b, c)]


def test_jsonl_with_structured_boxes(tmp_path: Path) -> None:
    _photos(tmp_path, ["x.png"])
    row = {
        "file": "x.png",
        "label": "counterfeit",
        "flags": ["stitch_irregular"],
        "boxes": [{"name": "stitch_irregular", "box": [3, 4, 20, 21], "subtlety": 0.9}],
        "score": 3,
    }
    (tmp_path / "m.jsonl").write_text("\n" + json.dumps(row) + "\n")
    (r,) = load_manifest(tmp_path / "m.jsonl")
    assert r.line == 2 and r.flags == ("stitch_irregular",)
    assert r.boxes == (Box("stitch_irregular", 3, 4, 20, 21, 0.9),)
    assert r.extra == {"score": "3"}


def test_folder_manifest(tmp_path: Path) -> None:
    _photos(tmp_path, ["genuine/a.jpg", "genuine/sub/b.JPG", "counterfeit/c.png"])
    (tmp_path / "genuine" / "notes.txt").write_text("hi")
    records = load_manifest(tmp_path)
    assert sorted((r.file.name, r.label) for r in records) == [
        ("a.jpg", "genuine"),
        ("b.JPG", "genuine"),
        ("c.png", "counterfeit"),
    ]
    assert all(r.flags is None and r.split is None for r in records)


def test_hash_tracks_labels_splits_and_bytes(tmp_path: Path) -> None:
    _photos(tmp_path, ["a.jpg", "b.jpg"])
    recs = [Record(tmp_path / "a.jpg", "genuine"), Record(tmp_path / "b.jpg", "counterfeit")]
    h = manifest_hash(recs)
    assert h == manifest_hash(list(reversed(recs)))
    assert h != manifest_hash([recs[0], Record(tmp_path / "b.jpg", "genuine")])
    assert h != manifest_hash([recs[0], Record(tmp_path / "b.jpg", "counterfeit", split="test")])
    (tmp_path / "b.jpg").write_bytes(jpeg_bytes(64, 64, seed=9))
    assert h != manifest_hash(recs)


def test_bad_rows_are_listed_with_line_numbers(tmp_path: Path) -> None:
    _photos(tmp_path, ["ok.jpg", "dup.jpg"])
    (tmp_path / "m.csv").write_text(
        "file,label,flags,boxes,split\n"
        "ok.jpg,genuine,,,\n"
        "missing.jpg,genuine,,,\n"  # line 3
        "dup.jpg,fake,,,\n"  # line 4
        "dup.jpg,counterfeit,bogus_flag,,\n"  # line 5
        "dup.jpg,counterfeit,logo_font,logo_font 5 5 1 1,\n"  # line 6
        "dup.jpg,counterfeit,logo_font,logo_font 1 2 x 4,\n"  # line 7
        "dup.jpg,counterfeit,,,validation\n"  # line 8
        "dup.jpg,counterfeit,,,\n"  # line 9 (first good dup.jpg)
        "dup.jpg,counterfeit,,,\n"  # line 10 (listed twice)
        "ok.jpg,genuine,color_shift,,\n"  # line 11: genuine with a tell
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "m.csv")
    message = str(info.value)
    lines = {line for line, _ in info.value.problems}
    assert lines == {3, 4, 5, 6, 7, 8, 10, 11}
    for needle in (
        "line 3: file 'missing.jpg' not found",
        "line 4: unknown label 'fake' (allowed: genuine, counterfeit)",
        "line 5: unknown flag(s) 'bogus_flag'",
        "line 6: malformed box",
        "line 7: malformed box",
        "line 8: unknown split 'validation'",
        "line 10: file 'dup.jpg' is listed twice (also line 9)",
    ):
        assert needle in message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("name,label\na.jpg,genuine\n", "lacks column(s) file"),
        ("file,label\n", "no rows"),
    ],
)
def test_unusable_manifests(tmp_path: Path, content: str, needle: str) -> None:
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ManifestError, match=re.escape(needle)):
        load_manifest(tmp_path / "m.csv")


def test_unusable_sources(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match="genuine/ and counterfeit/"):
        load_manifest(tmp_path)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ManifestError, match="unknown manifest type"):
        load_manifest(tmp_path / "m.txt")
    (tmp_path / "m.csv").write_bytes(b"file,label\n\xff\xfe,genuine\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(tmp_path / "m.csv")
