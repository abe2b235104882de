"""Bundles that carry only their trained flags, served by a real ``authlens serve``.

* Trained without flag labels (the real sneakers set has none): the graph has no flag outputs,
  answers raise no flag and ``/v1/model`` says so.
* Trained with two flags: only those two are exported, served and named, in vocabulary order,
  and they are the same heads as in the full model.
* A bundle written before schema 4 (every flag, no ``untrained_flags``) serves as before.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from factories import jpeg_bytes
from serverutil import AUTHLENS, ROOT, Server, copy_bundle, start_server, stop_server

from model.bundle import (
    MANIFEST_NAME,
    MODEL_FILE,
    OUTPUT_NAMES,
    SUMS_FILE,
    content_digest,
    load_bundle,
    rewrite_manifest,
)
from model.flags import FLAG_NAMES
from serving.predictor import Predictor

TWO_FLAGS = ("serial_format", "stitch_irregular")  # out of vocabulary order on purpose
IN_ORDER = tuple(f for f in FLAG_NAMES if f in TWO_FLAGS)  # ("stitch_irregular", "serial_format")
PHOTOS = [jpeg_bytes(640, 480, seed=11), jpeg_bytes(300, 900, seed=12)]


def _files(photos: list[bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (f"p{i}.jpg", p)) for i, p in enumerate(photos)]


@pytest.fixture(scope="module")
def two_flag_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (same weights as ``tiny_bundle_dir``) trained with two flags only."""
    from factories import tiny_bundle

    out = tmp_path_factory.mktemp("bundle") / "two-flags"
    tiny_bundle(out, flags=TWO_FLAGS)
    return out


@pytest.fixture(scope="module")
def no_flag_server(no_flag_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("no-flags")
    s = start_server(copy_bundle(no_flag_bundle_dir, tmp / "bundle"), tmp / "serve.log")
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def two_flag_server(two_flag_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The two-flag bundle with both thresholds at 0: every usable photo raises both."""
    tmp = tmp_path_factory.mktemp("two-flags")
    bundle = copy_bundle(two_flag_bundle_dir, tmp / "bundle")
    rewrite_manifest(bundle, {"decision": {"flag_thresholds": dict.fromkeys(TWO_FLAGS, 0.0)}})
    s = start_server(bundle, tmp / "serve.log")
    yield s
    stop_server(s)


def test_a_model_trained_without_flag_labels_exports_no_flag_outputs(no_flag_bundle_dir: Path) -> None:
    bundle = load_bundle(no_flag_bundle_dir, strict=True)
    m = bundle.manifest
    assert m.flags == () and m.untrained_flags == FLAG_NAMES
    assert m.decision.flag_thresholds == {}
    assert m.outputs == ("p_genuine", "cam", "embedding")
    graph = onnx.load(str(no_flag_bundle_dir / MODEL_FILE)).graph
    assert [o.name for o in graph.output] == list(m.outputs)
    assert m.parity is not None and set(m.parity.output_max_abs_diff) == set(m.outputs)
    data = json.loads((no_flag_bundle_dir / MANIFEST_NAME).read_text())
    assert data["flags"] == [] and data["untrained_flags"] == list(FLAG_NAMES)


def test_no_flag_model_scores_with_no_flags_and_says_so(no_flag_server: Server) -> None:
    with no_flag_server.client() as c:
        info = c.get("/v1/model").json()
        r = c.post("/v1/score?explain=true", files=_files(PHOTOS))
        batch = c.post(
            "/v1/score/batch",
            json={"images": [{"id": "a", "data": base64.b64encode(PHOTOS[0]).decode(), "item_id": "x"}]},
        )
    assert info["flags"] == [] and info["untrained_flags"] == list(FLAG_NAMES)
    assert info["flags_note"] == "Trained without flag labels: this model raises no flags."
    assert info["decision"]["flag_thresholds"] == {}
    assert r.status_code == 200, r.text
    body = r.json()
    item = body["item"]
    assert item["verdict"] in ("genuine", "counterfeit", "inconclusive")
    assert item["flagged_features"] == [] and item["images_used"] == [0, 1]
    assert item["receipt"]["payload"]["flagged_features"] == []
    for im in body["images"]:
        assert im["flagged_features"] == [] and im["flag_scores"] == {}
        assert im["explanation"]["overlay_png_base64"]  # the evidence map still explains the verdict
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"][0]["result"]["flag_scores"] == {}
    assert batch.json()["items"][0]["result"]["flagged_features"] == []


def test_offline_scoring_of_a_no_flag_bundle(no_flag_server: Server, tmp_path: Path) -> None:
    (tmp_path / "p0.jpg").write_bytes(PHOTOS[0])
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [
            *AUTHLENS,
            "score",
            "--bundle",
            str(no_flag_server.bundle),
            str(tmp_path / "p0.jpg"),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    with no_flag_server.client() as c:
        api = c.post("/v1/score", files=[("files", ("p0.jpg", PHOTOS[0]))]).json()
    for result in (line, api):
        result["item"].pop("receipt")
    assert line["item"] == api["item"] and line["item"]["flagged_features"] == []
    assert line["images"] == api["images"] and line["images"][0]["flag_scores"] == {}


def test_a_two_flag_model_exports_serves_and_names_only_its_flags(
    two_flag_server: Server, two_flag_bundle_dir: Path
) -> None:
    m = load_bundle(two_flag_bundle_dir, strict=True).manifest
    assert m.flags == IN_ORDER == ("stitch_irregular", "serial_format")  # vocabulary order
    assert m.untrained_flags == tuple(f for f in FLAG_NAMES if f not in TWO_FLAGS)
    assert m.outputs == OUTPUT_NAMES
    graph = onnx.load(str(two_flag_bundle_dir / MODEL_FILE)).graph
    dims = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.output}
    assert dims["flag_probs"][1] == dims["flag_maps"][1] == 2
    with two_flag_server.client() as c:
        info = c.get("/v1/model").json()
        r = c.post("/v1/score", files=_files(PHOTOS))
    assert [f["name"] for f in info["flags"]] == list(IN_ORDER)
    assert [f["title"] for f in info["flags"]] == ["Stitching", "Serial / date code"]
    assert info["untrained_flags"] == list(m.untrained_flags)
    assert "Never raised" in info["flags_note"] and "Logo lettering" in info["flags_note"]
    assert r.status_code == 200, r.text
    body = r.json()
    flagged = body["item"]["flagged_features"]
    assert {f["name"] for f in flagged} == set(TWO_FLAGS)  # thresholds 0: both raised, no other
    for f in flagged:
        im = body["images"][f["image_index"]]
        b = f["box"]
        assert 0 <= b["x0"] < b["x1"] <= im["width"] and 0 <= b["y0"] < b["y1"] <= im["height"]
    for im in body["images"]:
        assert list(im["flag_scores"]) == list(IN_ORDER)


def test_the_two_flags_are_the_full_models_heads(tiny_bundle_dir: Path, two_flag_bundle_dir: Path) -> None:
    """Same weights (seed 0): the subset graph picks the right columns of the flag head."""
    full = Predictor.load(tiny_bundle_dir, threads=1, max_pixels=10_000_000)
    two = Predictor.load(two_flag_bundle_dir, threads=1, max_pixels=10_000_000)
    a = full.score_item([("p.jpg", PHOTOS[0])]).images[0]
    b = two.score_item([("p.jpg", PHOTOS[0])]).images[0]
    assert b.counterfeit_probability == a.counterfeit_probability
    assert b.flag_scores == pytest.approx({f: a.flag_scores[f] for f in IN_ORDER}, abs=1e-5)
    assert len(a.flag_scores) == len(FLAG_NAMES)


def test_a_schema_3_bundle_with_every_flag_serves_as_before(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """Written as before schema 4: no ``untrained_flags``, every flag and output."""
    old = copy_bundle(tiny_bundle_dir, tmp_path / "old")
    data = json.loads((old / MANIFEST_NAME).read_text())
    del data["untrained_flags"]
    data["schema_version"] = 3
    data["content_sha256"] = content_digest(data)
    raw = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    (old / MANIFEST_NAME).write_bytes(raw)
    sums = (old / SUMS_FILE).read_text().splitlines()
    digest = hashlib.sha256(raw).hexdigest()
    (old / SUMS_FILE).write_text(
        "".join(f"{digest}  {MANIFEST_NAME}\n" if ln.endswith(MANIFEST_NAME) else ln + "\n" for ln in sums)
    )
    bundle = load_bundle(old, strict=True)
    assert bundle.manifest.schema_version == 3 and bundle.manifest.flags == FLAG_NAMES
    assert bundle.manifest.untrained_flags == () and bundle.manifest.outputs == OUTPUT_NAMES
    before = Predictor.load(tiny_bundle_dir, threads=1, max_pixels=10_000_000).score_item(
        [("p.jpg", PHOTOS[1])]
    )
    after = Predictor.load(old, threads=1, max_pixels=10_000_000).score_item([("p.jpg", PHOTOS[1])])
    assert after.images[0].model_dump(exclude={"explanation"}) == before.images[0].model_dump(
        exclude={"explanation"}
    )
    assert after.item.model_dump() == before.item.model_dump()
    assert list(after.images[0].flag_scores) == list(FLAG_NAMES)
