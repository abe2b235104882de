"""``bundle.json`` metrics (:mod:`training.export.metadata`): the evaluation report, read defensively."""

from __future__ import annotations

import json
from pathlib import Path

from factories import tiny_checkpoint

from training.export.metadata import collect_metrics


def test_metrics_come_from_the_report_read_defensively(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(64)
    ckpt.metrics = {"val_roc_auc": 0.9, "val_loss": float("nan")}
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(
            {
                "summary": {
                    "roc_auc": 0.97,
                    "ece": 0.02,
                    "n": 100,
                    "probe_roc_auc": 0.81,
                    "evaluated": "test",
                },
                "probe": {"roc_auc": 0.8, "pr_auc": 0.7, "val_roc_auc_by_C": {"1.0": 0.8}},
                "checkpoint": {"epoch": ckpt.epoch},
                "breakdowns": {"af1": {"roc_auc": 0.5}},
            }
        )
    )
    m = collect_metrics(ckpt, report)
    assert m["source"] == "report.json" and m["roc_auc"] == 0.97 and m["n"] == 100
    assert m["linear_probe"] == {"roc_auc": 0.8, "pr_auc": 0.7}  # the section wins over summary copies
    assert "probe_roc_auc" not in m and "breakdowns" not in m
    assert m["checkpoint"] == {"val_roc_auc": 0.9, "val_loss": None}
    warnings: list[str] = []
    stale = json.loads(report.read_text())
    stale["checkpoint"]["epoch"] = ckpt.epoch + 3
    report.write_text(json.dumps(stale))
    m = collect_metrics(ckpt, report, warnings)
    assert m["source"] == "checkpoint" and "roc_auc" not in m and "stale" in warnings[0]
    report.write_text("[1, 2")
    assert collect_metrics(ckpt, report)["source"] == "checkpoint"
