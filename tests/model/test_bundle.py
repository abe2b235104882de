"""Bundle verification: what a bundle must be to load, and what is refused with which message."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from factories import decision
from pydantic import ValidationError

from model.bundle import (
    CARD_FILE,
    MANIFEST_NAME,
    MODEL_FILE,
    OOD_FILE,
    OUTPUT_NAMES,
    SCHEMA_VERSION,
    SUMS_FILE,
    BundleError,
    BundleManifest,
    content_digest,
    load_bundle,
    output_names,
    rewrite_manifest,
    trained_flags,
)
from model.flags import FLAG_NAMES


@pytest.fixture
def bundle_dir(tiny_bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's tiny bundle, free to damage."""
    return Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))


def _manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))


def _write_manifest(directory: Path, data: dict) -> None:
    (directory / MANIFEST_NAME).write_text(json.dumps(data, indent=2), encoding="utf-8")


def test_exported_bundle_verifies_and_lists_every_file(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir, strict=True)
    raw = (bundle_dir / MANIFEST_NAME).read_bytes()
    assert bundle.sha256 == hashlib.sha256(raw).hexdigest()
    assert set(bundle.manifest.files) == {MODEL_FILE, OOD_FILE, CARD_FILE}
    assert bundle.manifest.schema_version == SCHEMA_VERSION
    assert bundle.unlisted_files == ()
    # SHA256SUMS is what `sha256sum -c` reads: every file, bundle.json included.
    listed = dict(reversed(line.split("  ", 1)) for line in (bundle_dir / SUMS_FILE).read_text().splitlines())
    for name in (MANIFEST_NAME, MODEL_FILE, OOD_FILE, CARD_FILE):
        assert listed[name] == hashlib.sha256((bundle_dir / name).read_bytes()).hexdigest()


def test_one_corrupted_byte_of_the_model_is_refused_naming_the_file(bundle_dir: Path) -> None:
    model = bundle_dir / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx: checksum mismatch"):
        load_bundle(bundle_dir)


def test_a_newer_schema_version_is_refused_with_a_clear_message(bundle_dir: Path) -> None:
    data = _manifest(bundle_dir)
    data["schema_version"] = SCHEMA_VERSION + 1
    _write_manifest(bundle_dir, data)
    with pytest.raises(BundleError) as exc:
        load_bundle(bundle_dir)
    message = str(exc.value)
    assert (
        f"schema_version {SCHEMA_VERSION + 1} is newer than this authlens supports ({SCHEMA_VERSION})"
        in message
    )
    assert "upgrade authlens" in message


def test_a_hand_edited_manifest_is_refused(bundle_dir: Path) -> None:
    data = _manifest(bundle_dir)
    data["decision"]["counterfeit_threshold"] = 0.99
    _write_manifest(bundle_dir, data)
    with pytest.raises(BundleError, match="edited after export"):
        load_bundle(bundle_dir)


def test_an_edit_with_a_recomputed_digest_is_caught_by_the_checksum_list(bundle_dir: Path) -> None:
    data = _manifest(bundle_dir)
    data["decision"]["counterfeit_threshold"] = 0.99
    data["content_sha256"] = content_digest(data)
    _write_manifest(bundle_dir, data)
    with pytest.raises(BundleError, match=rf"{SUMS_FILE}: sha256 of bundle\.json"):
        load_bundle(bundle_dir)


def test_expected_sha256_pins_one_bundle(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert load_bundle(bundle_dir, expected_sha256=bundle.sha256.upper()).sha256 == bundle.sha256
    with pytest.raises(BundleError, match="is not the expected"):
        load_bundle(bundle_dir, expected_sha256="0" * 64)


def test_unlisted_files_are_reported_and_refused_when_strict(bundle_dir: Path) -> None:
    (bundle_dir / "notes.txt").write_text("not part of the bundle")
    (bundle_dir / "model.int8.onnx").write_bytes(b"dropped in by hand")
    bundle = load_bundle(bundle_dir)
    assert bundle.unlisted_files == ("model.int8.onnx", "notes.txt")
    # An INT8 file the manifest does not list is never served.
    with pytest.raises(BundleError, match="has no INT8 model"):
        bundle.onnx_path(int8=True)
    with pytest.raises(BundleError, match=r"does not list: model\.int8\.onnx, notes\.txt"):
        load_bundle(bundle_dir, strict=True)


def test_a_missing_listed_file_is_named(bundle_dir: Path) -> None:
    (bundle_dir / OOD_FILE).unlink()
    with pytest.raises(BundleError, match=r"ood\.npz: listed in bundle\.json but missing"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("damage", ["no_manifest", "truncated_model", "no_sums"])
def test_a_half_written_bundle_never_verifies(bundle_dir: Path, damage: str) -> None:
    if damage == "no_manifest":  # interrupted before bundle.json, which is written last
        (bundle_dir / MANIFEST_NAME).unlink()
        expected = r"bundle\.json: not found"
    elif damage == "truncated_model":
        model = bundle_dir / MODEL_FILE
        model.write_bytes(model.read_bytes()[:1000])
        expected = r"model\.onnx: checksum mismatch"
    else:
        (bundle_dir / SUMS_FILE).unlink()
        expected = "SHA256SUMS: missing"
    with pytest.raises(BundleError, match=expected):
        load_bundle(bundle_dir)


def test_schema_violations_name_the_field(bundle_dir: Path) -> None:
    data = _manifest(bundle_dir)
    data["decision"]["genuine_threshold"] = 0.9
    data["decision"]["counterfeit_threshold"] = 0.1
    data["content_sha256"] = content_digest(data)
    _write_manifest(bundle_dir, data)
    with pytest.raises(BundleError, match=r"does not match the bundle schema: decision: .*must not exceed"):
        load_bundle(bundle_dir)


def test_a_manifest_listing_itself_is_refused(bundle_dir: Path) -> None:
    data = _manifest(bundle_dir)
    data["files"][MANIFEST_NAME] = "0" * 64
    _write_manifest(bundle_dir, data)
    with pytest.raises(
        BundleError, match=r"files: .*must be a plain name inside the bundle, other than bundle\.json"
    ):
        load_bundle(bundle_dir)


def test_not_json_and_not_a_directory(bundle_dir: Path, tmp_path: Path) -> None:
    (bundle_dir / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nowhere")


def test_schema_version_1_bundles_still_load(bundle_dir: Path) -> None:
    """Bundles written before content_sha256 and SHA256SUMS existed keep loading."""
    data = _manifest(bundle_dir)
    for key in ("content_sha256", "parity"):
        data.pop(key, None)
    data["schema_version"] = 1
    _write_manifest(bundle_dir, data)
    (bundle_dir / SUMS_FILE).unlink()
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest.schema_version == 1
    assert bundle.manifest.content_sha256 is None


def test_rewrite_manifest_reseals_a_deliberate_change(bundle_dir: Path) -> None:
    before = load_bundle(bundle_dir)
    after = rewrite_manifest(bundle_dir, {"decision": {"counterfeit_threshold": 0.75}})
    assert after.manifest.decision.counterfeit_threshold == 0.75
    assert after.manifest.decision.genuine_threshold == before.manifest.decision.genuine_threshold
    assert after.sha256 != before.sha256
    assert load_bundle(bundle_dir, strict=True).sha256 == after.sha256
    with pytest.raises(BundleError, match="break the schema"):
        rewrite_manifest(bundle_dir, {"decision": {"counterfeit_threshold": 0.01}})
    assert load_bundle(bundle_dir).sha256 == after.sha256  # a refused change leaves the bundle as it was


def test_ood_statistics_load_with_their_shapes(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    dim = bundle.manifest.embedding_dim
    assert bundle.manifest.ood.method == "knn" and bundle.ood_stats.reference.shape == (16, dim)
    scores = bundle.ood_stats.score(np.zeros((3, dim), np.float32))
    assert scores.shape == (3,)


def test_trained_flags_are_the_thresholds_in_vocabulary_order() -> None:
    assert trained_flags(decision(flag_thresholds={"serial_format": 0.5, "logo_font": 0.4})) == (
        "logo_font",
        "serial_format",
    )
    assert trained_flags(decision(flag_thresholds={})) == ()
    assert trained_flags(decision()) == FLAG_NAMES
    with pytest.raises(ValueError, match=r"unknown flags \['sparkle'\]; known flags: logo_font, "):
        trained_flags(decision(flag_thresholds={"sparkle": 0.5}))


def test_output_names_leave_out_the_flag_outputs_without_flags() -> None:
    assert output_names(True) == OUTPUT_NAMES
    assert output_names(False) == ("p_genuine", "cam", "embedding")


def _with_flags(data: dict, flags: list[str], outputs: tuple[str, ...]) -> dict:
    """The manifest ``data`` carrying ``flags`` only (thresholds to match), with ``outputs``."""
    return {
        **data,
        "flags": flags,
        "untrained_flags": [f for f in FLAG_NAMES if f not in flags],
        "outputs": list(outputs),
        "decision": {**data["decision"], "flag_thresholds": dict.fromkeys(flags, 0.5)},
    }


def test_flags_and_flag_outputs_go_together(bundle_dir: Path) -> None:
    data = _manifest(bundle_dir)
    assert BundleManifest.model_validate(data).outputs == OUTPUT_NAMES
    no_flags = BundleManifest.model_validate(_with_flags(data, [], output_names(False)))
    assert no_flags.flags == () and no_flags.untrained_flags == FLAG_NAMES
    # no flags, yet flag outputs
    with pytest.raises(
        ValidationError,
        match=r"a bundle that reports no flag has outputs \['p_genuine', 'cam', 'embedding'\]",
    ):
        BundleManifest.model_validate(_with_flags(data, [], OUTPUT_NAMES))
    # flags, yet no flag outputs
    for flags in (list(FLAG_NAMES), ["stitch_irregular"]):
        with pytest.raises(
            ValidationError, match=r"a bundle that reports flags has outputs \['p_genuine', 'flag_probs'"
        ):
            BundleManifest.model_validate(_with_flags(data, flags, output_names(False)))
    with pytest.raises(ValidationError, match="do not match the flags"):
        BundleManifest.model_validate(
            {**data, "outputs": ["p_genuine", "cam", "flag_probs", "flag_maps", "embedding"]}
        )


def test_flags_are_vocabulary_names_in_vocabulary_order(bundle_dir: Path) -> None:
    data = _manifest(bundle_dir)
    two = _with_flags(data, ["stitch_irregular", "serial_format"], OUTPUT_NAMES)
    assert BundleManifest.model_validate(two).untrained_flags == tuple(
        f for f in FLAG_NAMES if f not in ("stitch_irregular", "serial_format")
    )
    for bad in (["serial_format", "stitch_irregular"], ["stitch_irregular", "sparkle"]):
        with pytest.raises(ValidationError, match="must be distinct flags of the vocabulary in its order"):
            BundleManifest.model_validate(
                {
                    **two,
                    "flags": bad,
                    "decision": {**two["decision"], "flag_thresholds": dict.fromkeys(bad, 0.5)},
                }
            )
    with pytest.raises(
        ValidationError, match=r"\['stitch_irregular'\] are listed both as reported and as untrained"
    ):
        BundleManifest.model_validate({**two, "untrained_flags": ["logo_font", "stitch_irregular"]})
    with pytest.raises(ValidationError, match="exactly one entry per flag"):
        BundleManifest.model_validate({**two, "decision": data["decision"]})


def test_a_loaded_manifest_with_flags_but_no_flag_outputs_is_refused(bundle_dir: Path) -> None:
    data = _with_flags(_manifest(bundle_dir), ["logo_font"], output_names(False))
    data["content_sha256"] = content_digest(data)
    _write_manifest(bundle_dir, data)
    with pytest.raises(
        BundleError, match=r"does not match the bundle schema: \(root\): .*reports flags has outputs"
    ):
        load_bundle(bundle_dir)
