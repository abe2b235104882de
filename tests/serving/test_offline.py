"""``authlens score`` inputs: folders, manifests with item grouping, per-item errors, receipts."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from factories import jpeg_bytes
from serverutil import AUTHLENS, ROOT

from serving.offline import InputError, collect, score_items
from serving.predictor import Predictor
from serving.receipts import ReceiptSigner, verify_receipt, write_private_key


@pytest.fixture(scope="module")
def predictor(tiny_bundle_dir: Path) -> Predictor:
    return Predictor.load(tiny_bundle_dir, threads=1, max_pixels=10_000_000)


def test_manifest_groups_items_and_bad_photo_fails_only_its_item(
    predictor: Predictor, tmp_path: Path
) -> None:
    (tmp_path / "bag").mkdir()
    for i in range(3):
        (tmp_path / "bag" / f"{i}.jpg").write_bytes(jpeg_bytes(200, 150, seed=i))
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    (tmp_path / "m.csv").write_text(
        "file,item_id\nbag/0.jpg,bag-1\nbag/1.jpg,bag-1\nbag/2.jpg,\nbroken.jpg,bag-2\n", encoding="utf-8"
    )
    items = collect([tmp_path / "m.csv"])
    assert [len(it.files) for it in items] == [2, 1, 1]
    key = tmp_path / "k.pem"
    signer = ReceiptSigner(write_private_key(key), ephemeral=False)
    out = io.StringIO()
    summary = score_items(predictor, items, out, batch_size=2, signer=signer)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [ln["item_id"] for ln in lines] == ["bag-1", str((tmp_path / "bag" / "2.jpg").resolve()), "bag-2"]
    assert len(lines[0]["images"]) == 2 and lines[0]["item"]["images_used"] == [0, 1]
    assert lines[2]["error"]["code"] == "unsupported_format" and "broken.jpg" in lines[2]["error"]["message"]
    assert summary.items == 3 and summary.errors == 1 and summary.images == 4
    verify_receipt(lines[0]["item"]["receipt"], signer.public_key)


def test_folders_recurse_and_limits_are_named(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.JPG").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("skip me")
    assert [Path(it.item_id).name for it in collect([tmp_path / "a"])] == ["x.JPG"]
    with pytest.raises(InputError, match="no such file"):
        collect([tmp_path / "missing"])
    many = [tmp_path / f"{i}.jpg" for i in range(9)]
    for p in many:
        p.write_bytes(b"")
    with pytest.raises(InputError, match="at most 8"):
        collect(many, one_item=True)


def test_cli_bad_path_is_one_line(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [*AUTHLENS, "score", "--bundle", str(tiny_bundle_dir), str(tmp_path / "nope.jpg")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "nope.jpg: no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_jsonl_manifests_group_like_csv_and_bad_lines_are_named(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg_bytes(64, 48, seed=i))
    (tmp_path / "m.jsonl").write_text(
        '{"file": "0.jpg", "item_id": "bag-1"}\n\n{"file": "1.jpg", "item_id": "bag-1"}\n{"file": "2.jpg"}\n',
        encoding="utf-8",
    )
    assert [len(it.files) for it in collect([tmp_path / "m.jsonl"])] == [2, 1]
    (tmp_path / "bad.jsonl").write_text('{"file": "0.jpg"}\n{"file": "1.jpg",\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2 is not JSON"):
        collect([tmp_path / "bad.jsonl"])
