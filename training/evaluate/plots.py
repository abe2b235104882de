"""The report's figures under ``plots/``: ROC, reliability diagram, confusion matrix, worst errors.

matplotlib is imported when plotting (Agg backend), not with this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.flags import LABELS
from training.evaluate.localisation import target_boxes, to_model_input
from training.evaluate.scores import FARS, Scored
from training.metrics import reliability, roc_auc

PLOTS_DIR = "plots"
VERDICTS: tuple[str, ...] = ("genuine", "counterfeit", "inconclusive")


def worst_errors(records: Sequence, scored: Scored, n: int) -> list[dict[str, Any]]:
    """The photos the model gets most wrong, with their maps: genuine with the highest p, fakes with the lowest.

    Up to ``n`` wrong-side photos (error above 0.5); when none is wrong, the four closest to it.
    Each is a panel for :func:`plot_report`: model-input pixels, map, boxes in model-input pixels.
    """
    err = np.where(scored.labels == 1, 1.0 - scored.p, scored.p)  # (N,) distance from the truth
    order = np.argsort(-err)
    idx = [int(i) for i in order[:n] if err[i] > 0.5] or [int(i) for i in order[: min(4, n)]]
    panels = []
    for i in idx:
        _, boxes = target_boxes(records[i])
        panels.append(
            {
                "pixels": scored.inputs[i].numpy(),
                "cam": scored.cams[i],
                "boxes": [to_model_input(b, scored.geometries[i]) for b in boxes],
                "label": records[i].label,
                "p": float(scored.p[i]),
                "name": Path(records[i].file).name[:28],
            }
        )
    return panels


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)


def _roc(path: Path, labels: np.ndarray, curves: list[tuple[str, np.ndarray]]) -> None:
    from sklearn.metrics import roc_curve

    fig, ax = _pyplot().subplots(figsize=(5, 5))
    for name, scores in curves:
        if len(np.unique(labels)) == 2:
            fpr, tpr, _ = roc_curve(labels, scores)
            ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(labels, scores):.3f})")
    for far in FARS:
        ax.axvline(far, color="grey", lw=0.6, ls=":")
    ax.plot([0, 1], [0, 1], color="lightgrey", lw=0.8)
    ax.set(
        xlabel="false-accusation rate (genuine called counterfeit)", ylabel="counterfeit recall", title="ROC"
    )
    ax.legend(loc="lower right")
    _save(fig, path, 110)


def _reliability(path: Path, labels: np.ndarray, curves: list[tuple[str, np.ndarray]], bins: int) -> None:
    fig, ax = _pyplot().subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="lightgrey", lw=0.8)
    for name, scores in curves:
        rel = reliability(scores, labels, bins)
        ok = rel.counts > 0
        ax.plot(rel.confidence[ok], rel.frequency[ok], marker="o", label=f"{name} (ECE {rel.ece:.3f})")
    ax.set(
        xlabel="predicted counterfeit probability", ylabel="observed counterfeit share", title="Reliability"
    )
    ax.legend(loc="upper left")
    _save(fig, path, 110)


def _confusion(path: Path, labels: np.ndarray, verdicts: Sequence[str]) -> None:
    matrix = np.zeros((2, 3), dtype=int)  # (true label, verdict)
    for y, v in zip(labels, verdicts, strict=True):
        matrix[int(y), VERDICTS.index(v)] += 1
    fig, ax = _pyplot().subplots(figsize=(5.5, 3.4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="black" if n < matrix.max() / 2 else "white")
    ax.set_xticks(range(3), [f"verdict\n{c}" for c in VERDICTS])
    ax.set_yticks(range(2), [f"true {label}" for label in LABELS])
    ax.set_title("Confusion (verdicts with the calibrated thresholds)")
    _save(fig, path, 110)


def _worst(path: Path, panels: list[dict[str, Any]]) -> None:
    from matplotlib.patches import Rectangle

    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = _pyplot().subplots(rows, cols, figsize=(3.2 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, panels, strict=False):
        img = item["pixels"]
        ax.imshow(img)
        h, w = img.shape[:2]
        ax.imshow(item["cam"], cmap="jet", alpha=0.4, extent=(0, w, h, 0), interpolation="bilinear")
        for b in item["boxes"]:
            ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="lime", lw=1.2))
        ax.set_title(f"{item['label']} p={item['p']:.2f}\n{item['name']}", fontsize=8)
    fig.suptitle("Worst errors (map: counterfeit evidence; green: labelled boxes)")
    _save(fig, path, 100)


def plot_report(
    out: Path, scored: Scored, p_probe: np.ndarray | None, worst: list[dict[str, Any]], bins: int
) -> dict[str, str]:
    """Draw the report's figures into ``out`` (the ``plots/`` folder).

    Args:
        out: The folder to write into (created).
        scored: The evaluated photos' scores and verdicts.
        p_probe: The linear probe's counterfeit probabilities, drawn beside the model's ROC.
        worst: Panels from :func:`worst_errors` (no figure when empty).
        bins: Reliability-diagram bins.

    Returns:
        ``{figure name: path relative to the report folder}``, as ``report.json`` lists them.
    """
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    curves = [("fine-tuned", scored.p)] + ([("linear probe", p_probe)] if p_probe is not None else [])
    _roc(out / "roc.png", scored.labels, curves)
    files["roc"] = f"{PLOTS_DIR}/roc.png"
    _reliability(
        out / "reliability.png",
        scored.labels,
        [("uncalibrated", scored.p_uncal), ("calibrated", scored.p)],
        bins,
    )
    files["reliability"] = f"{PLOTS_DIR}/reliability.png"
    _confusion(out / "confusion.png", scored.labels, scored.verdicts)
    files["confusion"] = f"{PLOTS_DIR}/confusion.png"
    if worst:
        _worst(out / "worst_errors.png", worst)
        files["worst_errors"] = f"{PLOTS_DIR}/worst_errors.png"
    return files
