"""Typed YAML configs: overrides, unknown keys and wrong types are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.configio import ConfigError, apply_overrides, config_hash, dump_config, load_config
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_every_shipped_config_validates() -> None:
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert files, "configs/ must hold at least one training config"
    for path in files:
        if path.name.startswith("serving"):
            continue
        cfg = load_config(TrainConfig, path)
        assert cfg.data.manifest


def test_overrides_apply_with_yaml_types(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  manifest: datasets/demo\ntrain:\n  epochs: 3\n")
    cfg = load_config(
        TrainConfig,
        path,
        ["train.epochs=7", "train.lr=3e-4", "model.pretrained=none", "train.channels_last=false"],
    )
    assert cfg.train.epochs == 7 and cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.pretrained == "none" and cfg.train.channels_last is False


def test_unknown_key_names_key_and_allowed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  manifest: x\ntrain:\n  epochz: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, path)
    msg = str(info.value)
    assert "train.epochz: unknown key" in msg and "epochs" in msg and str(path) in msg


def test_unknown_override_key_and_bad_type() -> None:
    with pytest.raises(ConfigError, match=r"train\.bogus: unknown key"):
        load_config(TrainConfig, None, ["data.manifest=x", "train.bogus=1"])
    with pytest.raises(ConfigError, match=r"train\.epochs: .*integer"):
        load_config(TrainConfig, None, ["data.manifest=x", "train.epochs=many"])
    with pytest.raises(ConfigError, match=r"data\.resize: .*'stretch' or 'letterbox'"):
        load_config(TrainConfig, None, ["data.manifest=x", "data.resize=crop"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(TrainConfig, None, ["data.manifest"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, bad)


def test_override_into_scalar_is_refused() -> None:
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_resolved_config_round_trips_and_hashes_stably(tmp_path: Path) -> None:
    cfg = load_config(TrainConfig, None, ["data.manifest=x", "run.seed=3"])
    out = tmp_path / "resolved.yaml"
    out.write_text(dump_config(cfg))
    again = load_config(TrainConfig, out)
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(TrainConfig, None, ["data.manifest=x", "run.seed=4"])) != config_hash(cfg)
