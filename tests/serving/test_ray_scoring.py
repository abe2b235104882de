"""``authlens score --engine ray``: a local Ray instance with two workers scores what ``authlens score``
scores, line for line (receipts aside), resumes where a run stopped, and reads Parquet crawler dumps
and URIs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from factories import jpeg_bytes
from serverutil import AUTHLENS, ROOT

from serving.batch import line_schema, read_lines, score_with_ray
from serving.offline import collect, score_items
from serving.predictor import Predictor
from serving.receipts import load_private_key, verify_receipt, write_private_key


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A Ray instance in this process with two CPUs: two scoring workers."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of photos (one corrupt, one in a subfolder) and a manifest grouping two of them."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    for i in range(10):
        (root / ("sub" if i == 3 else ".") / f"p{i}.jpg").write_bytes(jpeg_bytes(160 + 16 * i, 120, seed=i))
    (root / "broken.jpg").write_bytes(b"not a photo")
    (root / "items").mkdir()
    for i in range(3):
        (root / "items" / f"{i}.jpg").write_bytes(jpeg_bytes(200, 150, seed=50 + i))
    (root / "items.csv").write_text(
        "file,item_id\nitems/0.jpg,bag-1\nitems/1.jpg,bag-1\nitems/2.jpg,\nbroken.jpg,bag-2\n",
        encoding="utf-8",
    )
    return root


def _local(bundle: Path, paths: list[Path], **kwargs: Any) -> dict[str, dict]:
    """``authlens score``'s lines by item id."""
    predictor = Predictor.load(bundle, max_pixels=50_000_000)
    out = io.StringIO()
    score_items(predictor, collect(paths), out, **kwargs)
    return {(x := json.loads(line))["item_id"]: x for line in out.getvalue().splitlines()}


def _without_receipt(line: dict) -> dict:
    if "item" not in line:
        return line
    return {**line, "item": {k: v for k, v in line["item"].items() if k != "receipt"}}


def test_two_workers_write_what_authlens_score_writes(
    ray_address: str, tiny_bundle_dir: Path, photos: Path, tmp_path: Path
) -> None:
    """The CLI on the two-worker instance: same lines as ``authlens score`` for the same files."""
    key = tmp_path / "receipt.pem"
    write_private_key(key)
    inputs = [photos / "items.csv", photos / "sub", *sorted(photos.glob("p*.jpg"))]
    out = tmp_path / "out"
    started = time.perf_counter()
    proc = subprocess.run(
        [
            *AUTHLENS,
            "score",
            "--engine",
            "ray",
            "--address",
            ray_address,
            "--workers",
            "2",
            "--batch-size",
            "2",
            "--receipt-key",
            str(key),
            "--bundle",
            str(tiny_bundle_dir),
            *map(str, inputs),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env={**os.environ, "AUTHLENS_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"ray score of 15 photos, 2 workers: {time.perf_counter() - started:.1f} s")
    got = {x["item_id"]: x for x in read_lines(str(out))}
    want = _local(tiny_bundle_dir, inputs)
    assert len(got) == len(want) == 13 and got.keys() == want.keys()
    for item_id, line in want.items():
        assert _without_receipt(got[item_id]) == _without_receipt(line), item_id
    assert got["bag-2"]["error"]["code"] == "unsupported_format"
    assert len(got["bag-1"]["images"]) == 2 and got["bag-1"]["item"]["images_used"] == [0, 1]
    public = load_private_key(key).public_key()
    for line in got.values():
        if "item" in line:
            payload = verify_receipt(line["item"]["receipt"], public)
            assert payload["request_id"].startswith("ray-")
    parts = list(out.glob("part-*.jsonl"))
    assert parts and not list(out.glob(".*"))  # only finished parts, no temporary files
    assert "13 │" in proc.stderr and "wrote" in proc.stderr
    assert '"event": "ray_score_done"' in proc.stderr and '"workers": 2' in proc.stderr


def test_a_rerun_scores_only_what_is_missing(
    ray_address: str, tiny_bundle_dir: Path, photos: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    first = score_with_ray(str(tiny_bundle_dir), [str(photos / "sub")], out, batch_size=2, progress=False)
    assert (first.items, first.skipped) == (1, 0)
    everything = [str(photos / "sub"), *map(str, sorted(photos.glob("p*.jpg")))]
    second = score_with_ray(str(tiny_bundle_dir), everything, out, batch_size=2, progress=False)
    assert (second.items, second.images, second.skipped, second.errors) == (9, 9, 1, 0)
    third = score_with_ray(str(tiny_bundle_dir), everything, out, batch_size=2, progress=False)
    assert (third.items, third.skipped) == (0, 10)
    lines = read_lines(out)
    assert sorted(x["item_id"] for x in lines) == sorted(_local(tiny_bundle_dir, list(map(Path, everything))))


def test_parquet_dump_in_parquet_out(
    ray_address: str, tiny_bundle_dir: Path, photos: Path, tmp_path: Path
) -> None:
    """A crawler dump with the photos' bytes: items by item_id, one bad photo and one oversized item
    are error rows; Parquet rows read back equal the JSONL lines of ``authlens score``."""
    rows = [
        {"item_id": "bag-1", "file": "items/1.jpg"},
        {"item_id": "bag-1", "file": "items/0.jpg"},  # out of order: photos are ordered by file
        {"item_id": None, "file": "items/2.jpg"},
        {"item_id": "bag-2", "file": "broken.jpg"},
        *({"item_id": "big", "file": f"p{i}.jpg"} for i in range(9) if i != 3),
        *({"item_id": "big", "file": f"sub/p{i}.jpg"} for i in (3, 3)),
    ]
    for r in rows:
        r["image"] = (photos / r["file"]).read_bytes()
    dump = tmp_path / "crawl" / "day.parquet"
    dump.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), dump)
    out = tmp_path / "out"
    summary = score_with_ray(
        str(tiny_bundle_dir), [str(dump.parent)], str(out), fmt="parquet", batch_size=2, progress=False
    )
    assert (summary.items, summary.errors) == (4, 2)
    assert pq.read_schema(next(out.glob("part-*.parquet"))) == line_schema()
    got = {x["item_id"]: x for x in read_lines(str(out))}
    assert got["big"]["error"]["code"] == "too_many_photos" and len(got["big"]["files"]) == 10
    assert got["bag-2"]["error"]["code"] == "unsupported_format"
    want = _local(tiny_bundle_dir, [photos / "items.csv"])
    assert got["bag-1"]["files"] == ["items/0.jpg", "items/1.jpg"]
    for item_id, dumped in (("bag-1", "bag-1"), (str((photos / "items" / "2.jpg").resolve()), "items/2.jpg")):
        assert (
            got[dumped]["item"] == want[item_id]["item"] and got[dumped]["images"] == want[item_id]["images"]
        )


def test_uris_and_dumps_of_paths_name_items_like_authlens_score(
    ray_address: str, tiny_bundle_dir: Path, photos: Path, tmp_path: Path
) -> None:
    """``file://`` URIs go through pyarrow's filesystems; a dump of relative paths reads like a manifest."""
    dump = photos / "paths.parquet"
    pq.write_table(
        pa.table(
            {"file": ["items/0.jpg", "items/1.jpg", "items/2.jpg"], "item_id": ["bag-1", "bag-1", None]}
        ),
        dump,
    )
    try:
        out = str(tmp_path / "out")
        uri = (photos / "sub").as_uri()
        score_with_ray(str(tiny_bundle_dir), [uri, str(dump)], out, batch_size=2, progress=False)
    finally:
        dump.unlink()
    got = {x["item_id"]: x for x in read_lines(out)}
    want = _local(tiny_bundle_dir, [photos / "items.csv", photos / "sub"])
    assert got[f"{uri}/p3.jpg"]["images"] == want[str(photos / "sub" / "p3.jpg")]["images"]
    for item_id in ("bag-1", str((photos / "items" / "2.jpg").resolve())):
        assert got[item_id] == want[item_id]
