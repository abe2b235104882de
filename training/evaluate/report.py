"""The report files: ``report.json`` (with its flat ``summary``), ``report.md`` and ``predictions.csv``.

The summary's metrics, and the titles, formats and order of the Markdown summary table, come from
:data:`training.metrics.METRICS`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.flags import FLAG_NAMES
from training import metrics as metric_table
from training.evaluate.scores import Scored

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PREDICTIONS_CSV = "predictions.csv"


# ----------------------------------------------------------------------------- summary


def summary_section(name: str, labels: np.ndarray, sections: dict[str, Any]) -> dict[str, Any]:
    """The flat ``summary`` the export copies into ``bundle.json``: every table metric this report has.

    Args:
        name: What was evaluated (``evaluated``).
        labels: ``(N,)`` 1 for counterfeit (``n``, ``n_counterfeit``).
        sections: The report's sections by their ``report.json`` keys (``metrics``,
            ``operating_point``, ``flags``, ``localisation``, ``ood``, ``items``, ``probe``).

    Returns:
        ``evaluated``, ``localisation_target`` and the value of every
        :data:`training.metrics.METRICS` entry found in its scope's section (photos, items,
        probe), in the table's order.
    """
    loc, checks = sections["localisation"], sections["ood"]["checks"] or {}
    photos = {
        "n": len(labels),
        "n_counterfeit": int(labels.sum()),
        **sections["metrics"],
        **sections["operating_point"],
        "flag_macro_f1": sections["flags"]["macro_f1"],
        "localisation_peak_in_box": loc["peak_in_box"],
        "localisation_chance": loc["chance"],
        "ood_rate": sections["ood"]["rate"],
    }
    if "non_product_photos" in checks:
        photos["ood_rate_non_product_photos"] = checks["non_product_photos"]["flagged_rate"]
    scopes = {"photos": photos, "items": sections["items"] or {}, "probe": sections["probe"] or {}}
    summary: dict[str, Any] = {"evaluated": name, "localisation_target": loc["target"]}
    for scope, values in scopes.items():
        for m in metric_table.metrics_of(scope):
            if m.field in values:
                summary[m.key] = values[m.field]
    return summary


def nan_to_none(value: Any) -> Any:
    """``value`` with every non-finite float as ``None`` and numpy scalars as Python's (for JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    if isinstance(value, np.generic):
        return nan_to_none(value.item())
    return value


# ----------------------------------------------------------------------------- markdown


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _headline(report: dict[str, Any]) -> list[str]:
    """Title, checkpoint, and the table metrics side by side with the linear probe."""
    s, ck = report["summary"], report["checkpoint"]
    probe = report.get("probe") or {}
    lines = [
        f"# Evaluation: {report['evaluated']['name']}",
        "",
        f"Checkpoint `{ck['path']}` (epoch {ck['epoch']}, {ck['backbone']}, {ck['image_size']} px); "
        f"{s['n']} photos ({s['n_counterfeit']} counterfeit).",
        "",
        "| metric | fine-tuned | linear probe |",
        "| --- | --- | --- |",
    ]
    for m in metric_table.metrics_of("photos"):
        if m.key in report["metrics"]:
            lines.append(
                f"| {m.title} | {m.format(report['metrics'][m.key])} | {m.format(probe.get(m.key))} |"
            )
    return lines


def _verdicts(report: dict[str, Any]) -> list[str]:
    dec = report["decision"]
    lines = [
        "",
        "## Verdicts with the fitted thresholds (chosen on held-out photos: validation or out of fold)",
        "",
        f"Counterfeit at p >= {_fmt(dec['counterfeit_threshold'], 4)}, genuine at "
        f"p <= {_fmt(dec['genuine_threshold'], 4)} (temperature {_fmt(dec['temperature'])}).",
        "",
        "| | value |",
        "| --- | --- |",
    ]
    for key, value in report["operating_point"].items():
        lines.append(f"| {key.replace('_', ' ')} | {_fmt(value)} |")
    reasons = report["inconclusive_reasons"]
    if reasons:
        lines.append(f"| inconclusive reasons | {', '.join(f'{k}: {v}' for k, v in reasons.items())} |")
    return lines


def _flags(flags: dict[str, Any]) -> list[str]:
    lines = ["", "## Flags", ""]
    if not flags["labelled_photos"]:
        return [*lines, "No photo here has flag labels."]
    lines += [
        f"Macro-F1 {_fmt(flags['macro_f1'])} over {flags['labelled_photos']} flag-labelled photos.",
        "",
        "| flag | F1 | positives |",
        "| --- | --- | --- |",
    ]
    for name in FLAG_NAMES:
        lines.append(f"| {name} | {_fmt(flags['f1'][name])} | {flags['positives'][name]} |")
    return lines


def _localisation(loc: dict[str, Any]) -> list[str]:
    lines = ["", "## Where the map points", ""]
    if not loc["n"]:
        return [*lines, "No counterfeit photo here has boxes."]
    return [
        *lines,
        f"Counterfeit photos with {loc['target']} boxes: {loc['n']}. Map peak inside a box: "
        f"{_fmt(loc['peak_in_box'])}; peak cell touching a box: {_fmt(loc['cell_overlaps_box'])}; "
        f"a random peak would land inside {_fmt(loc['chance'])}.",
    ]


def _row(values: Sequence[Any]) -> str:
    return "| " + " | ".join(_fmt(v) for v in values) + " |"


def _items(items: dict[str, Any] | None) -> list[str]:
    if not items:
        return []
    keys = ("roc_auc", "recall_at_far_1pct", "recall_at_far_5pct", "ece")
    keys += ("false_accusation_rate", "counterfeit_recall", "inconclusive_rate")
    return [
        "",
        "## Items (photos of one item_id combined, as serving does)",
        "",
        f"{items['n']} items ({items['n_counterfeit']} counterfeit); photos per item: "
        + ", ".join(f"{k}: {v}" for k, v in items["photos_per_item"].items())
        + ".",
        "",
        "| ROC-AUC | recall at 1% false accusations | recall at 5% | ECE | false accusations | recall | inconclusive |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        _row([items[k] for k in keys]),
    ]


def _tells(tells: dict[str, Any] | None) -> list[str]:
    if not tells:
        return []
    lines = [
        "",
        "## Which fakes are caught",
        "",
        "Each group of counterfeits against all genuine photos. Subtlety is that of the photo's "
        "easiest tell (0 obvious .. 1 subtle).",
        "",
        "| group | fakes | ROC-AUC | recall (verdict) |",
        "| --- | --- | --- | --- |",
    ]
    for name, g in tells["by_subtlety"].items():
        lines.append(_row([f"easiest tell {name}", g["n"], g["roc_auc"], g["counterfeit_recall"]]))
    for name, g in tells["by_flag"].items():
        a = g["alone"]
        group = f"with {name} (alone: {a['n']}, AUC {_fmt(a['roc_auc'])})"
        lines.append(_row([group, g["n"], g["roc_auc"], g["counterfeit_recall"]]))
    return lines


def _breakdowns(breakdowns: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    keys = (
        "n",
        "n_counterfeit",
        "roc_auc",
        "false_accusation_rate",
        "counterfeit_recall",
        "inconclusive_rate",
    )
    for name, groups in breakdowns.items():
        lines += [
            "",
            f"## By {name}",
            "",
            "| value | n | counterfeit | ROC-AUC | false accusations | recall | inconclusive |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [_row([value, *(g[k] for k in keys)]) for value, g in groups.items()]
    return lines


def markdown(report: dict[str, Any]) -> str:
    """Human summary of a report: headline table (fine-tuned vs probe), operating point, breakdowns."""
    lines = [
        *_headline(report),
        *_verdicts(report),
        *_flags(report["flags"]),
        *_localisation(report["localisation"]),
        *_items(report.get("items")),
        *_tells(report.get("tells")),
        *_breakdowns(report["breakdowns"]),
        "",
        "## Plots",
        "",
        *(f"![{k}]({v})" for k, v in report["plots"].items()),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- files


def write_predictions(
    path: Path, records: Sequence, scored: Scored, thresholds: dict[str, float], p_probe: np.ndarray | None
) -> None:
    """``predictions.csv``: one row per photo with its probability, verdict, reasons and raised flags."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "file",
                "label",
                "p_counterfeit",
                "verdict",
                "reasons",
                "ood_score",
                "raised_flags",
                "probe_p_counterfeit",
            ]
        )
        for i, r in enumerate(records):
            raised = [
                n
                for j, n in enumerate(FLAG_NAMES)
                if n in thresholds and scored.flag_probs[i, j] >= thresholds[n]
            ]
            writer.writerow(
                [
                    str(r.file),
                    r.label,
                    f"{scored.p[i]:.6f}",
                    scored.outcomes[i].verdict,
                    ";".join(scored.outcomes[i].reasons),
                    f"{scored.ood_scores[i]:.4f}",
                    ";".join(raised),
                    "" if p_probe is None else f"{p_probe[i]:.6f}",
                ]
            )


def write_report(
    out: Path, report: dict[str, Any], records: Sequence, scored: Scored, p_probe: np.ndarray | None
) -> None:
    """Write ``report.json``, ``report.md`` and ``predictions.csv`` into ``out``.

    Args:
        out: The report folder.
        report: The report, already passed through :func:`nan_to_none`.
        records: The evaluated records, in the order of ``scored``.
        scored: Their scores and verdicts.
        p_probe: The linear probe's probabilities (an empty column without it).
    """
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(markdown(report), encoding="utf-8")
    thresholds = report["decision"]["flag_thresholds"]
    write_predictions(out / PREDICTIONS_CSV, records, scored, thresholds, p_probe)
