"""Several manifests read as one (``data.extra_manifests``, e.g. reviewed decisions beside the set)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from training.config import DataConfig
from training.data.manifest import ManifestError, load_manifest, load_manifests


def _set(folder: Path, names: list[str], label: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (32, 32), (len(n) * 20 % 255, 0, 0)).save(folder / n)
    manifest = folder / "manifest.csv"
    manifest.write_text("file,label,source\n" + "".join(f"{n},{label},review\n" for n in names))
    return manifest


def test_extra_manifests_are_read_beside_the_main_one(tmp_path: Path) -> None:
    main = _set(tmp_path / "main", ["a.jpg", "b.jpg"], "genuine")
    extra = _set(tmp_path / "reviewed", ["c.jpg"], "counterfeit")
    records = load_manifests(main, [extra])
    assert [r.label for r in records] == ["genuine", "genuine", "counterfeit"]
    assert records[-1].extra["source"] == "review"
    assert load_manifests(main) == load_manifest(main)
    cfg = DataConfig(manifest=str(main), extra_manifests=[str(extra)])
    assert cfg.extra_manifests == [str(extra)]
    assert DataConfig(manifest=str(main)).extra_manifests == []


def test_a_photo_listed_by_two_manifests_is_refused(tmp_path: Path) -> None:
    main = _set(tmp_path / "main", ["a.jpg"], "genuine")
    again = tmp_path / "again.csv"
    again.write_text(f"file,label\n{tmp_path / 'main' / 'a.jpg'},counterfeit\n")
    with pytest.raises(ManifestError, match="also listed by"):
        load_manifests(main, [again])
