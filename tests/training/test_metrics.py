"""The one table of metrics (:data:`training.metrics.METRICS`): the summary, report, card and console read it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import factories
import numpy as np
import pytest
import torch

from model.decision import judge_image, logit
from model.flags import FLAG_NAMES, LABELS
from model.imaging import Geometry
from training import metrics
from training.cli.train import _summary_line
from training.data.manifest import Box, Record
from training.evaluate.ood import ood_section
from training.evaluate.report import markdown, summary_section
from training.evaluate.run import report_sections
from training.evaluate.scores import Scored, score_metrics
from training.export.model_card import _metrics_table
from training.train.inference import Outputs

SIZE = 32  # model input side of the synthetic photos
N = 16


def _records(labels: np.ndarray) -> list[Record]:
    """Two photos per item; fakes carry a boxed tell with a subtlety (so every section is filled)."""
    out = []
    for i, y in enumerate(labels):
        tell = (Box(FLAG_NAMES[0], 4, 4, 12, 12, subtlety=(i % 3) / 3),) if y else ()
        out.append(
            Record(
                Path(f"/x/{i}.jpg"),
                LABELS[y],
                item_id=f"item{i // 4}-{y}",
                brand="acme" if i % 4 < 2 else "globex",
                flags=(FLAG_NAMES[0],) if y else (),
                boxes=(Box("product", 0, 0, SIZE, SIZE), *tell),
            )
        )
    return out


def _scored(labels: np.ndarray, decision: Any) -> Scored:
    rng = np.random.default_rng(0)
    p = np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.2, len(labels)), 0.02, 0.98)  # (N,) overlapping
    outputs = Outputs(
        logits=logit(p),
        flag_logits=rng.normal(0, 2, (len(labels), len(FLAG_NAMES))),
        embeddings=np.zeros((len(labels), 4)),
        cams=rng.random((len(labels), 4, 4)),
    )
    return Scored(
        labels=labels,
        inputs=torch.zeros((len(labels), SIZE, SIZE, 3), dtype=torch.uint8),
        geometries=[Geometry(1.0, 1.0, 0.0, 0.0, (SIZE, SIZE))] * len(labels),
        outputs=outputs,
        p_uncal=np.clip(p * 1.1, 0, 1),
        p=p,
        flag_probs=1 / (1 + np.exp(-outputs.flag_logits)),
        ood_scores=rng.random(len(labels)),
        outcomes=[judge_image(float(x), (), decision) for x in p],
        inference_s=1.0,
    )


def synthetic_report() -> dict[str, Any]:
    """A report assembled by the evaluation's own section functions from synthetic scores."""
    labels = np.array([i % 2 for i in range(N)])
    decision = factories.decision(counterfeit_threshold=0.6, genuine_threshold=0.4)
    ckpt = SimpleNamespace(
        decision=decision,
        input=SimpleNamespace(image_size=SIZE),
        ood=SimpleNamespace(threshold=0.5, quantile=0.99),
    )
    records, scored = _records(labels), _scored(labels, decision)
    sections = report_sections(ckpt, records, scored, 10)  # type: ignore[arg-type]
    non_product = {"source": "test", "n": 3, "flagged_rate": 2 / 3, "score_median": 0.7, "not_flagged": ["x"]}
    sections["ood"] = ood_section(ckpt, scored.ood_scores, {"non_product_photos": non_product})  # type: ignore[arg-type]
    sections["probe"] = {"C": 1.0, "n_train": 24, **score_metrics(labels, scored.p[::-1].copy(), 10)}
    return {
        "summary": summary_section("synthetic", labels, sections),
        "evaluated": {"name": "synthetic", "split": "test", "manifest": None},
        "checkpoint": {"path": "best.pt", "epoch": 1, "backbone": "tiny", "image_size": SIZE},
        "decision": decision.model_dump(mode="json"),
        **sections,
        "plots": {"roc": "plots/roc.png"},
    }


def _card(summary: dict[str, Any], probe: dict[str, Any]) -> str:
    """The model card's metric table for a bundle whose metrics are this summary (as export copies it)."""
    model = {k: v for k, v in summary.items() if not k.startswith("probe_")}
    return "\n".join(_metrics_table({**model, "source": "report.json", "linear_probe": probe}))


def test_every_metric_of_the_summary_is_in_the_table() -> None:
    summary = synthetic_report()["summary"]
    numeric = [k for k, v in summary.items() if not isinstance(v, str)]
    assert {"item_roc_auc", "probe_roc_auc", "ood_rate_non_product_photos", "flag_macro_f1"} <= set(numeric)
    assert [k for k in numeric if metrics.metric(k) is None] == []
    assert [k for k, v in summary.items() if isinstance(v, str)] == ["evaluated", "localisation_target"]
    order = [m.key for m in metrics.METRICS]
    assert numeric == sorted(numeric, key=order.index)  # the summary lists them in table order


def test_table_keys_are_unique_and_scoped() -> None:
    keys = [m.key for m in metrics.METRICS]
    assert len(keys) == len(set(keys))
    assert metrics.metric("item_ece").field == "ece" and metrics.metric("item_ece").scope == "items"
    with pytest.raises(ValueError, match="Allowed: photos, items, probe"):
        metrics.Metric("x", "X", scope="batch")
    with pytest.raises(ValueError, match="must start with 'probe_'"):
        metrics.Metric("roc_auc", "ROC-AUC", scope="probe")


def test_format_counts_rates_and_missing_values() -> None:
    n, auc = metrics.metric("n"), metrics.metric("roc_auc")
    assert n is not None and auc is not None
    assert n.format(12) == "12" and n.format(12.0) == "12"
    assert auc.format(0.91234) == "0.912" and auc.format(0.91234, digits=4) == "0.9123"
    assert auc.format(None) == "n/a" and auc.format(float("nan")) == "n/a"


def test_report_card_and_console_read_titles_from_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    patched = tuple(
        replace(m, title=f"<{m.key}>", short=f"~{m.key}" if m.short else None) for m in metrics.METRICS
    )
    monkeypatch.setattr(metrics, "METRICS", patched)
    report = synthetic_report()
    summary = report["summary"]

    text = markdown(report)
    for key in report["metrics"]:
        assert f"| <{key}> |" in text
    card = _card(summary, report["probe"])
    for key in summary:
        if metrics.metric(key) is not None and not key.startswith("probe_"):
            assert f"| <{key}> |" in card
    line = _summary_line(summary)
    shown = [m.key for m in patched if m.short]
    assert all(f"~{k} " in line for k in shown), line
    assert line.index("~roc_auc") < line.index("~ece") < line.index("| linear probe: ~probe_roc_auc")


def test_a_new_metric_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """``miss_rate`` is computed (operating point) but not summarised: one table entry adds it everywhere."""
    assert "miss_rate" not in synthetic_report()["summary"]
    entry = metrics.Metric("miss_rate", "Miss rate at the thresholds", short="missed")
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, entry))
    report = synthetic_report()
    summary = report["summary"]
    assert summary["miss_rate"] == report["operating_point"]["miss_rate"]
    assert f"| Miss rate at the thresholds | {summary['miss_rate']:.4f} | — |" in _card(
        summary, report["probe"]
    )
    assert f"missed {summary['miss_rate']:.3f}" in _summary_line(summary)
