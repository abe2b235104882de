"""Synthetic generator: determinism, tells inside their boxes, consistent labels, no label shortcuts."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.flags import FLAG_NAMES
from model.imaging import resize_for_model, sharpness
from training.data.manifest import load_manifest
from training.data.synth import (
    CATEGORIES,
    LAYOUTS,
    PARTS,
    TELLS,
    TellSpec,
    generate,
    item_spec,
    photo_spec,
    plan_items,
    render_photo,
)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "images").iterdir())}


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(out, n=40, seed=7, size=384, contact_sheet_count=12)
    return out


def test_same_seed_same_bytes_whatever_the_workers(synth_set: Path, tmp_path: Path) -> None:
    again, steps = tmp_path / "again", []
    generate(again, n=40, seed=7, workers=2, contact_sheet_count=0, progress=steps.append)
    assert sum(steps) == 40 and len(steps) > 1  # progress as parts finish, every photo counted
    assert _digests(again) == _digests(synth_set)
    assert (again / "manifest.csv").read_bytes() == (synth_set / "manifest.csv").read_bytes()
    other, steps = tmp_path / "other", []
    generate(other, n=40, seed=8, contact_sheet_count=0, progress=steps.append)
    assert sum(steps) == 40
    assert not set(_digests(other).values()) & set(_digests(synth_set).values())


def test_manifest_labels_flags_and_boxes_are_consistent(synth_set: Path) -> None:
    records = load_manifest(synth_set)  # the loader itself refuses unknown flags and bad boxes
    assert len(records) == 40
    # Items come in genuine/counterfeit pairs with equal photo counts; only the last pair may be cut.
    assert abs(sum(r.label == "counterfeit" for r in records) - 20) <= 4
    by_item = defaultdict(list)
    for r in records:
        by_item[r.item_id].append(r)
        with Image.open(r.file) as img:
            assert img.size == (384, 384) and img.format == "JPEG"
        tells = [b for b in r.boxes if b.name != "product"]
        assert [b.name for b in r.boxes].count("product") == 1
        for b in r.boxes:
            assert 0 <= b.x0 < b.x1 <= 384 and 0 <= b.y0 < b.y1 <= 384
        if r.label == "genuine":
            assert r.flags == () and not tells
        else:
            assert r.flags is not None and 1 <= len(r.flags) <= 3
            assert set(r.flags) <= set(FLAG_NAMES)
            assert sorted(b.name for b in tells) == sorted(r.flags)
            assert all(b.subtlety is not None and 0 <= b.subtlety <= 1 for b in tells)
    assert any(len(v) > 1 for v in by_item.values())
    for photos in by_item.values():  # one physical item: same label, brand, category and tells
        assert len({(p.label, p.brand, p.category, p.flags) for p in photos}) == 1
        assert len({p.file for p in photos}) == len(photos)
    sheet = Image.open(synth_set / "contact_sheet.png")
    assert sheet.width >= 6 * 150


def test_every_tell_lies_inside_its_box() -> None:
    """Render each counterfeit photo with and without each tell: every changed pixel is in its box."""
    seed, checked = 11, 0
    names_seen: set[str] = set()
    for index, (item, _) in enumerate(plan_items(60, seed)):
        spec = item_spec(seed, item)
        if not spec.tells:
            continue
        photo = photo_spec(seed, index)
        full = render_photo(spec, photo, 384)
        boxes = {b.name: b for b in full.boxes}
        names = {t.name for t in spec.tells}
        for name in names:
            without = render_photo(spec, photo, 384, frozenset(names - {name}))
            changed = np.abs(full.pixels.astype(np.int16) - without.pixels.astype(np.int16)).max(axis=2) > 0
            ys, xs = np.nonzero(changed)
            assert len(xs) > 0, f"photo {index}: tell {name} changed nothing"
            b = boxes[name]
            assert xs.min() >= b.x0 and xs.max() < b.x1 and ys.min() >= b.y0 and ys.max() < b.y1, (
                f"photo {index}: {name} changed pixels in x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()} "
                f"outside its box {b}"
            )
            # The box is a locator, not the whole product: it holds the change snugly.
            box_area = (b.x1 - b.x0) * (b.y1 - b.y0)
            assert box_area < 0.5 * 384 * 384
            checked += 1
            names_seen.add(name)
    assert checked >= 40
    assert names_seen == set(FLAG_NAMES)


def test_only_the_tells_separate_the_classes() -> None:
    """Brightness, sharpness, colour and JPEG quality have the same distribution for both labels."""
    seed = 5
    stats: dict[str, list[list[float]]] = {"genuine": [], "counterfeit": []}
    for index, (item, _) in enumerate(plan_items(160, seed)):
        spec = item_spec(seed, item)
        photo = photo_spec(seed, index)
        pixels = render_photo(spec, photo, 384).pixels
        small, _ = resize_for_model(pixels, (224, 224))
        means = pixels.reshape(-1, 3).mean(axis=0)
        stats[spec.label].append([*means, float(np.log(sharpness(small) + 1)), photo.jpeg_quality])
    g, c = np.array(stats["genuine"]), np.array(stats["counterfeit"])
    assert len(g) == len(c) == 80
    pooled = np.concatenate([g, c]).std(axis=0)
    gap = np.abs(g.mean(axis=0) - c.mean(axis=0)) / pooled
    assert (gap < 0.35).all(), f"standardised mean gaps (R, G, B, log sharpness, JPEG q): {gap.round(2)}"


def test_subtle_tells_fade_at_224_pixels() -> None:
    """A subtle stitch or serial tell changes the 384 px photo more than its 224 px model input."""
    seed = 3
    ratios = []
    for index, (item, _) in enumerate(plan_items(400, seed)):
        spec = item_spec(seed, item)
        subtle = [
            t.name
            for t in spec.tells
            if t.subtlety > 0.75 and t.name in ("stitch_irregular", "serial_format")
        ]
        if not subtle:
            continue
        photo = photo_spec(seed, index)
        others = frozenset(t.name for t in spec.tells) - {subtle[0]}
        full = render_photo(spec, photo, 384).pixels
        without = render_photo(spec, photo, 384, others).pixels
        d384 = np.abs(full.astype(np.float32) - without).max()
        small = [resize_for_model(p, (224, 224))[0].astype(np.float32) for p in (full, without)]
        d224 = np.abs(small[0] - small[1]).max()
        ratios.append(d224 / max(d384, 1.0))
        if len(ratios) == 8:
            break
    assert len(ratios) == 8
    assert float(np.median(ratios)) < 0.8


def test_generate_refuses_to_clobber(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        generate(tmp_path, n=2, seed=0, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="n must be at least 1"):
        generate(tmp_path / "x", n=0, seed=0)


def test_every_flag_has_exactly_one_tell_drawing_function() -> None:
    assert set(TELLS) == set(FLAG_NAMES) and len(TELLS) == len(FLAG_NAMES)
    functions = [tell.draw for tell in TELLS.values()]
    assert len(set(functions)) == len(functions), "two flags share a drawing function"
    parts = {part.name for part in PARTS}
    for name, tell in TELLS.items():
        assert callable(tell.draw), name
        assert tell.part in parts, f"{name} changes part {tell.part!r}, which is not drawn"


@pytest.mark.parametrize("category", list(LAYOUTS))
def test_every_category_of_the_layout_table_draws(category: str) -> None:
    """A photo of each category renders, with and without every tell, each tell boxed in frame."""
    assert set(CATEGORIES) == set(LAYOUTS)
    genuine = replace(item_spec(2, 0), category=category, tells=())
    counterfeit = replace(genuine, label="counterfeit", tells=tuple(TellSpec(n, 0.2) for n in FLAG_NAMES))
    photo = photo_spec(2, 0)
    plain = render_photo(genuine, photo, 256)
    assert plain.pixels.shape == (256, 256, 3) and plain.pixels.dtype == np.uint8
    assert [b.name for b in plain.boxes] == ["product"]
    faked = render_photo(counterfeit, photo, 256)
    assert [b.name for b in faked.boxes] == ["product", *FLAG_NAMES]
    for b in faked.boxes:
        assert 0 <= b.x0 < b.x1 <= 256 and 0 <= b.y0 < b.y1 <= 256, (category, b)
    assert (faked.pixels != plain.pixels).any()
