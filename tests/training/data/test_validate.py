"""Validation finds every planted problem, never crashes, and passes the real sneakers set."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from factories import jpeg_bytes
from PIL import Image
from typer.testing import CliRunner

from authlens.cli import app
from training.data.validate import validate_dataset


def _png(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _blobs(seed: int, w: int = 320, h: int = 240) -> Image.Image:
    low = np.random.default_rng(seed).random((5, 5, 3)) * 255
    return Image.fromarray(low.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with one of every problem validation must find."""
    root = tmp_path_factory.mktemp("planted")
    (root / "img").mkdir()
    files: dict[str, bytes] = {f"good_{k}.jpg": _jpeg(_blobs(k)) for k in range(6)}
    whole = jpeg_bytes(320, 240, seed=42)
    files["truncated.jpg"] = whole[: len(whole) // 2]
    files["empty.jpg"] = b""
    files["notes.jpg"] = b"This is a text file, not a photo.\n"
    files["cmyk.jpg"] = _jpeg(_blobs(20).convert("CMYK"))
    deep = (np.random.default_rng(3).random((60, 80)) * 65535).astype(np.uint16)
    files["deep16.png"] = _png(Image.fromarray(deep))  # mode I;16
    pal = _blobs(21).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    files["palette_alpha.png"] = _png(pal, transparency=0)
    files["rotated.jpg"] = jpeg_bytes(320, 240, seed=7, exif_orientation=6)
    files["png_named.jpg"] = _png(_blobs(22))
    files["tiny.jpg"] = _jpeg(_blobs(23, 64, 48))
    original = _blobs(30)
    files["dup_train.jpg"] = _jpeg(original)
    files["dup_test.jpg"] = _jpeg(original.resize((240, 180)), quality=55)
    files["item_a1.jpg"] = _jpeg(_blobs(31))
    files["item_a2.jpg"] = _jpeg(_blobs(32))
    files["unlisted.jpg"] = _jpeg(_blobs(33))
    files["twin_x.jpg"] = files["twin_y.jpg"] = _jpeg(_blobs(34))  # one photo under two item ids
    files["alike_x.jpg"] = _jpeg(_blobs(35))  # two named items that merely look alike
    files["alike_y.jpg"] = _jpeg(_blobs(35), quality=60)
    for name, data in files.items():
        (root / "img" / name).write_bytes(data)
    rows = [
        "file,label,item_id,split,flags,boxes",
        *[f"img/good_{k}.jpg,{'genuine' if k % 2 else 'counterfeit'},,train,," for k in range(6)],
        "img/truncated.jpg,genuine,,train,,",
        "img/empty.jpg,genuine,,train,,",
        "img/notes.jpg,counterfeit,,train,,",
        "img/cmyk.jpg,genuine,,val,,",
        "img/deep16.png,counterfeit,,val,,",
        "img/palette_alpha.png,genuine,,val,,",
        "img/rotated.jpg,counterfeit,,val,none,product 10 10 230 310",
        "img/png_named.jpg,genuine,,test,,",
        "img/tiny.jpg,counterfeit,,test,logo_font,logo_font 10 10 200 40",
        "img/dup_train.jpg,genuine,,train,,",
        "img/dup_test.jpg,counterfeit,,test,,",
        "img/item_a1.jpg,counterfeit,bagA,train,,",
        "img/item_a2.jpg,counterfeit,bagA,val,,",
        "img/twin_x.jpg,genuine,itemX,train,,",
        "img/twin_y.jpg,genuine,itemY,test,,",
        "img/missing.jpg,genuine,,train,,",
        "img/good_0.jpg,fake,,train,,",
        "img/alike_x.jpg,genuine,itemP,train,,",
        "img/alike_y.jpg,genuine,itemQ,test,,",
    ]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _files(items: list[dict]) -> set[str]:
    return {Path(i["file"]).name for i in items}


def test_every_planted_problem_is_found(planted: Path) -> None:
    report = validate_dataset(planted)
    data = report.to_dict()
    assert data["summary"]["photos"] == 23  # 25 rows, 2 refused by the manifest
    unreadable = {Path(u["file"]).name: u["code"] for u in report.unreadable}
    assert unreadable == {
        "truncated.jpg": "corrupt_image",
        "empty.jpg": "empty_file",
        "notes.jpg": "unsupported_format",
    }
    assert all(u["reason"] and u["line"] > 1 for u in report.unreadable)
    converted = {Path(c["file"]).name: c["mode"] for c in report.converted}
    assert converted == {"cmyk.jpg": "CMYK", "deep16.png": "I;16", "palette_alpha.png": "P"}
    (rotated,) = report.exif_rotated
    assert Path(rotated["file"]).name == "rotated.jpg" and rotated["orientation"] == 6
    assert _files(report.extension_mismatch) == {"png_named.jpg"}
    assert _files(report.small) == {"tiny.jpg", "deep16.png"}
    assert _files(report.boxes_outside) == {"tiny.jpg"}  # the rotated photo's box fits its 240x320
    leak, twins = sorted(report.cross_split_duplicates, key=lambda c: sorted(c["files"]))
    assert sorted(Path(f).name for f in leak["files"]) == ["dup_test.jpg", "dup_train.jpg"]
    assert set(leak["splits"]) == {"train", "test"} == set(twins["splits"])
    assert any(
        sorted(Path(f).name for f in c["files"]) == ["dup_test.jpg", "dup_train.jpg"]
        for c in report.label_conflicts
    )
    (item,) = report.items_across_splits
    assert item["item_id"] == "bagA"
    assert _files(report.skipped_files) == {"unlisted.jpg"}
    problems = {p["line"]: p["reason"] for p in report.manifest_problems}
    assert "not found" in problems[23] and "unknown label 'fake'" in problems[24]
    assert report.readable == 20 and not report.clean
    # One photo under two item ids (same bytes) in train and test is a leak, whatever the ids say.
    assert any(
        sorted(Path(f).name for f in c["files"]) == ["twin_x.jpg", "twin_y.jpg"]
        for c in report.cross_split_duplicates
    )
    # Look-alike photos of two named items: the ids outrank the hash (as in the split), counted only.
    assert report.duplicate_pairs_between_items == 1 and report.duplicate_pairs == 2
    assert data["balance"]["split"]["train"]["counterfeit"] >= 1


def test_cli_writes_report_and_strict_fails_on_leaks(planted: Path, tmp_path: Path) -> None:
    out = tmp_path / "r" / "report.json"
    result = CliRunner().invoke(app, ["data", "validate", str(planted), "--report", str(out)])
    assert result.exit_code == 0, result.output
    for needle in (
        "truncated.jpg",
        "empty.jpg",
        "notes.jpg",
        "Duplicates across splits",
        "bagA",
        "line 23",
        "not clean",
    ):
        assert needle in result.output
    assert json.loads(out.read_text())["summary"]["unreadable"] == 3
    strict = CliRunner().invoke(app, ["data", "validate", str(planted), "--strict"])
    assert strict.exit_code == 1
    missing = CliRunner().invoke(app, ["data", "validate", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no such manifest" in missing.output


def test_folder_dataset_lists_files_it_skips(tmp_path: Path) -> None:
    for label in ("genuine", "counterfeit"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.jpg").write_bytes(jpeg_bytes(200, 150, seed=len(label)))
    (tmp_path / "genuine" / "readme.txt").write_text("x")
    (tmp_path / "genuine" / "clip.gif").write_bytes(b"GIF89a")
    report = validate_dataset(tmp_path)
    assert report.photos == 2 and report.clean
    assert _files(report.skipped_files) == {"readme.txt", "clip.gif"}


def test_sneakers_set_validates_clean(sneakers_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sneakers.json"
    result = CliRunner().invoke(
        app, ["data", "validate", str(sneakers_dir), "--strict", "--report", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["summary"]["photos"] == data["summary"]["readable"] == 1099
    assert (
        data["balance"]["model"]["af1"]["genuine"] > 0 and data["balance"]["model"]["j1"]["counterfeit"] > 0
    )
    assert data["summary"]["duplicate_pairs"] >= 10
    # the one photo filed as both genuine and counterfeit (docs/datasets.md); no split column, so
    # leaks are the split's business (test_split.py)
    assert data["summary"]["label_conflicts"] == 1 and data["clean"]
