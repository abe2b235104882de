"""Smoke run of ``make bench`` (``benchmarks/harness.py``): every section for a few seconds each.

Checks the plumbing, not the speed: the results JSON has every section without error (both
servers, every load run, the targets, the CPU contention record) and the generated block of the
markdown document is replaced between its markers, the hand-written text around it kept.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from benchmarks.harness import PRESETS, SECTIONS, main
from benchmarks.report import BEGIN, END

DOC = """# Performance

Hand-written introduction.

<!-- bench:begin -->
stale figures
<!-- bench:end -->

Hand-written analysis.
"""


def test_smoke_run_writes_every_section_and_the_table(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text(DOC, encoding="utf-8")
    results = tmp_path / "results"
    rc = main(
        [
            "--preset", "smoke", "--bundle", str(tiny_bundle_dir), "--label", "smoke test",
            "--results-dir", str(results), "--doc", str(doc),
        ]
    )  # fmt: skip
    files = sorted(results.glob("*.json"))
    assert [f.name for f in files] == [f"{dt.date.today().isoformat()}-smoke-test.json"]
    report = json.loads(files[0].read_text(encoding="utf-8"))
    failed = {
        s: report[s]["error"] for s in SECTIONS if isinstance(report.get(s), dict) and "error" in report[s]
    }
    assert rc == 0 and not failed, failed

    preset = PRESETS["smoke"]
    graph = report["model"]["graphs"]["bundle"]
    assert set(graph["engines"]) == {"onnxruntime_fp32", "onnxruntime_int8", "pytorch_eager"}
    for b in preset.model_batches:
        assert all(e[f"batch{b}_ms"] > 0 for e in graph["engines"].values())
    assert {r["format"] for r in report["decode"]} == {"JPEG", "PNG", "WEBP", "HEIF"}
    assert all(r["overlapped"]["photos_per_s"] > 0 and r["compute_limit_fp32"] > 0 for r in report["ceiling"])
    for server in ("authlens", "baseline"):
        runs = report["http"]["servers"][server]
        closed = [r for r in runs if r["mode"] == "closed"]
        assert len(closed) == len(preset.http_sizes) * len(preset.http_levels)
        assert {r["mode"] for r in runs} == {"closed", "half_load", "batch"}
        assert all(r["errors"] == 0 and "cores" in r["client"] for r in runs), runs
        assert report["cold_start"][server]["cold_start_s"] > 0
        assert report["cold_start"][server]["peak_rss_mb"] > 0
    assert sum(r["requests_ok"] for r in report["http"]["servers"]["authlens"]) > 0
    assert [r["config"] for r in report["training"]] == list(preset.train_configs)
    assert report["training"][0]["photos_per_s"] > 0
    assert len(report["targets"]) == 7
    assert isinstance(report["contention"]["quiet"], bool)
    assert "other_cores_mean" in report["contention"]

    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Performance\n\nHand-written introduction.\n\n" + BEGIN)
    assert text.rstrip().endswith(END + "\n\nHand-written analysis.")
    assert "stale figures" not in text and text.count(BEGIN) == 1
    for title in ("**Targets**", "**1. Model only**", "**2. Decode", "**3. In-process", "**4. End to end",
                  "**5. Cold start", "**6. Training**"):  # fmt: skip
        assert title in text
    assert "| authlens | 320x240 | 4 clients |" in text
