"""A bundle carries only the flags its training data labelled (:mod:`training.export`).

The trained flags are the keys of the checkpoint's ``decision.flag_thresholds``: a model trained
without flag labels exports a graph without flag outputs (INT8 included), a model trained with
some exports those heads only, in vocabulary order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from model.bundle import CARD_FILE, INT8_FILE, MODEL_FILE, OUTPUT_NAMES, load_bundle, output_names
from model.flags import FLAG_INDEX, FLAG_NAMES
from model.session import make_session
from serving.predictor import Predictor
from training.checkpoint import Checkpoint, CheckpointError
from training.data.photos import ExportImages
from training.export.bundle import export_bundle
from training.export.graph import check_graph, export_onnx, serving_graph
from training.export.options import ExportError, ExportOptions, ExportSummary

TWO = ("serial_format", "logo_font")  # out of vocabulary order on purpose


def _trained(ckpt: Checkpoint, flags: tuple[str, ...]) -> Checkpoint:
    """``ckpt`` as if its data had labelled ``flags`` only: thresholds for those, same weights."""
    assert ckpt.decision is not None
    decision = ckpt.decision.model_copy(update={"flag_thresholds": dict.fromkeys(flags, 0.5)})
    return dataclasses.replace(ckpt, decision=decision)


@pytest.fixture(scope="module")
def no_flag_export(
    ckpt: Checkpoint, images: ExportImages, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ExportSummary]:
    """fp32 + INT8 bundle of the tiny model trained without flag labels."""
    summary = ExportSummary()
    out = tmp_path_factory.mktemp("no-flags") / "bundle"
    options = ExportOptions(int8=True, max_auc_drop=1.0, latency_repeats=2)
    export_bundle(_trained(ckpt, ()), out, images=images, options=options, summary=summary)
    return out, summary


def test_no_flag_labels_no_flag_outputs_fp32_and_int8(
    no_flag_export: tuple[Path, ExportSummary], images: ExportImages
) -> None:
    out, summary = no_flag_export
    bundle = load_bundle(out, strict=True)
    m = bundle.manifest
    assert m.flags == () and m.untrained_flags == FLAG_NAMES and m.decision.flag_thresholds == {}
    assert m.outputs == output_names(False) == ("p_genuine", "cam", "embedding")
    for name in (MODEL_FILE, INT8_FILE):
        assert [o.name for o in onnx.load(str(out / name)).graph.output] == list(m.outputs)
    assert m.parity is not None and m.parity.max_abs_diff <= 1e-4
    assert set(m.parity.output_max_abs_diff) == set(m.outputs)
    spec = m.int8
    assert spec is not None and spec.max_abs_diff_p_genuine is not None and spec.verdict_flips is not None
    assert summary.int8 is not None and summary.int8["max_abs_diff_flag_probs"] is None
    # the authenticity head alone is a head: it stays float
    graph = onnx.load(str(out / INT8_FILE)).graph
    heads = [n for n in graph.node if n.op_type == "Conv" and n.name in set(spec.excluded_nodes)]
    assert len(heads) == 1
    card = (out / CARD_FILE).read_text()
    assert "**Trained without flag labels: this model raises no flags.**" in card
    assert "Flags raised at these probabilities" not in card
    for int8 in (False, True):
        predictor = Predictor(bundle, threads=1, int8=int8, max_pixels=10_000_000)
        raws = predictor.infer(images.evaluation.pixels[:3])
        assert all(r.flag_probs.shape == (0,) and r.flag_maps.shape == (0, 2, 2) for r in raws)


def test_a_subset_of_flags_exports_those_heads_in_vocabulary_order(
    ckpt: Checkpoint, images: ExportImages, tmp_path: Path
) -> None:
    two = _trained(ckpt, TWO)
    out = tmp_path / "bundle"
    export_bundle(two, out, images=images)
    m = load_bundle(out, strict=True).manifest
    assert m.flags == ("logo_font", "serial_format") and m.outputs == OUTPUT_NAMES
    assert m.untrained_flags == tuple(f for f in FLAG_NAMES if f not in TWO)
    assert m.parity is not None and set(m.parity.output_max_abs_diff) == set(OUTPUT_NAMES)
    # ONNX Runtime's two flags are the full network's columns of those flags
    pixels = images.evaluation.pixels[:4]
    got = make_session(out / MODEL_FILE).run(["flag_probs", "flag_maps"], {"pixels": pixels})
    with torch.no_grad():
        full = serving_graph(ckpt)(torch.from_numpy(pixels))
    columns = [FLAG_INDEX[f] for f in m.flags]
    assert got[0].shape == (4, 2) and got[1].shape == (4, 2, 2, 2)
    np.testing.assert_allclose(got[0], full[1].numpy()[:, columns], atol=1e-4)
    np.testing.assert_allclose(got[1], full[3].numpy()[:, columns], atol=1e-3)
    card = (out / CARD_FILE).read_text()
    assert (
        "Trained flags, the tells this model reports: Logo lettering (`logo_font`), Serial / date code"
        in card
    )


def test_the_graph_check_refuses_outputs_that_do_not_match_the_flags(
    ckpt: Checkpoint, tmp_path: Path
) -> None:
    path = tmp_path / "model.onnx"
    opset = export_onnx(_trained(ckpt, TWO), path)
    check_graph(path, opset=opset, flags=("logo_font", "serial_format"))
    with pytest.raises(ExportError, match="output flag_probs has 2 flags, expected 1"):
        check_graph(path, opset=opset, flags=("logo_font",))
    with pytest.raises(ExportError, match=r"expected \['p_genuine', 'cam', 'embedding'\] for 0 flag"):
        check_graph(path, opset=opset, flags=())
    with pytest.raises(ExportError, match="output flag_probs has 2 flags, expected 7"):
        check_graph(path, opset=opset)  # the default: every flag, as before


def test_a_threshold_for_an_unknown_flag_is_refused(ckpt: Checkpoint) -> None:
    with pytest.raises(CheckpointError, match=r"unknown flags \['sparkle'\]"):
        serving_graph(_trained(ckpt, ("logo_font", "sparkle")))
