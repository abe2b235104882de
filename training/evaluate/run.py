"""Evaluate a checkpoint, and a linear-probe baseline on the same photos, into an honest report.

Usage: ``authlens evaluate --checkpoint runs/synthetic/best.pt [--split test] [--manifest M]``

Writes into the output folder (by default next to the checkpoint): ``report.json`` (everything,
with a flat ``summary`` the export copies into the bundle), ``report.md`` (the same for people),
``predictions.csv`` (one row per photo) and ``plots/`` (ROC, reliability diagram, confusion
matrix, worst errors with their maps).

Every figure is computed the way serving will see it: photos go through the serving decoder and
resize, verdicts through :mod:`model.decision` with the checkpoint's thresholds, OOD scores
through :class:`model.bundle.OODStats`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from model.bundle import Decision
from model.decision import judge_image, judge_item, map_box, sigmoid, usability_reasons
from model.flags import FLAG_NAMES, LABELS
from model.imaging import Geometry, sharpness
from model.logs import log_event
from model.network import AuthLensNet, NetworkSpec
from training.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from training.config import EvaluateConfig, TrainConfig
from training.data.dataset import DataError, EvalDataset, flag_target, label_of
from training.metrics import (
    ece_noise_floor,
    flag_f1,
    flag_macro_f1,
    pr_auc,
    recall_at_far,
    reliability,
    roc_auc,
)
from training.train.calibration import calibrated_probability, ood_stats
from training.train.inference import Outputs, predict, worker_init
from training.train.runtime import tune_cpu

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PREDICTIONS_CSV = "predictions.csv"
PLOTS_DIR = "plots"
FARS: tuple[float, ...] = (0.01, 0.05)
PROBE_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


# ----------------------------------------------------------------------------- inputs


def _collate(batch: list) -> list:
    return batch


class _GeometryDataset(EvalDataset):
    def __getitem__(self, index: int) -> tuple[np.ndarray, Geometry, int]:  # type: ignore[override]
        pixels, geometry = self.load(index)
        return pixels, geometry, index


def load_with_geometry(
    records: Sequence, *, image_size: int, resize: str, draft_size: int, workers: int
) -> tuple[torch.Tensor, list[Geometry]]:
    """Model inputs ``(N, H, W, 3)`` uint8 and the geometry of each (to map boxes to originals)."""
    ds = _GeometryDataset(records, image_size=image_size, resize=resize, draft_size=draft_size)
    inputs = torch.empty((len(records), image_size, image_size, 3), dtype=torch.uint8)
    geometries: list[Geometry | None] = [None] * len(records)
    loader = DataLoader(
        ds,
        batch_size=16,
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=worker_init if workers else None,
    )
    for batch in loader:
        for pixels, geometry, index in batch:
            inputs[index] = torch.from_numpy(np.array(pixels))
            geometries[index] = geometry
    return inputs, geometries  # type: ignore[return-value]


# ----------------------------------------------------------------------------- localisation


def _inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def target_boxes(record) -> tuple[str, list[tuple[float, float, float, float]]]:
    """The boxes the map should point into: tells when labelled, else the product."""
    tells = [(b.x0, b.y0, b.x1, b.y1) for b in record.boxes if b.name in FLAG_NAMES]
    if tells:
        return "tell", tells
    products = [(b.x0, b.y0, b.x1, b.y1) for b in record.boxes if b.name == "product"]
    return ("product", products) if products else ("none", [])


def localise(
    cam: np.ndarray, geometry: Geometry, input_size: tuple[int, int], boxes: list
) -> dict[str, float]:
    """Where the map's peak falls relative to ``boxes`` (original-photo pixels).

    Returns ``peak_in_box`` (the peak cell's centre is inside a box), ``cell_overlaps_box`` (the
    peak cell touches a box) and ``chance`` (share of cells whose centre is inside a box: what a
    peak placed at random would score).
    """
    _, peak = map_box(cam, input_size)
    px, py = geometry.to_original((peak[0], peak[1], peak[0], peak[1]))[:2]
    h, w = cam.shape
    ch, cw = input_size[0] / h, input_size[1] / w
    cell_x, cell_y = int(peak[0] // cw), int(peak[1] // ch)
    cell = geometry.to_original((cell_x * cw, cell_y * ch, (cell_x + 1) * cw, (cell_y + 1) * ch))
    inside = 0
    for y in range(h):
        for x in range(w):
            cx, cy = geometry.to_original(((x + 0.5) * cw, (y + 0.5) * ch, (x + 0.5) * cw, (y + 0.5) * ch))[
                :2
            ]
            inside += any(_inside((cx, cy), b) for b in boxes)
    return {
        "peak_in_box": float(any(_inside((px, py), b) for b in boxes)),
        "cell_overlaps_box": float(any(_overlaps(cell, b) for b in boxes)),
        "chance": inside / (h * w),
    }


# ----------------------------------------------------------------------------- scoring


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, np.generic):
        return _nan_to_none(value.item())
    return value


def score_metrics(labels: np.ndarray, p: np.ndarray, bins: int) -> dict[str, float]:
    """Threshold-free metrics of counterfeit probabilities ``p``."""
    return {
        "roc_auc": roc_auc(labels, p),
        "pr_auc": pr_auc(labels, p),
        "accuracy": float(np.mean((p >= 0.5) == (labels == 1))),
        **{f"recall_at_far_{round(f * 100)}pct": recall_at_far(labels, p, f) for f in FARS},
        "ece": reliability(p, labels, bins).ece,
        "ece_noise_floor": ece_noise_floor(p, bins),
    }


def operating_point(labels: np.ndarray, verdicts: Sequence[str]) -> dict[str, float]:
    """What the verdicts do on these photos: false accusations, misses, inconclusive share."""
    v = np.array(verdicts)
    gen, cf = labels == 0, labels == 1
    n_gen, n_cf = max(int(gen.sum()), 1), max(int(cf.sum()), 1)
    decided = v != "inconclusive"
    correct = ((v == "counterfeit") & cf) | ((v == "genuine") & gen)
    return {
        "false_accusation_rate": float(((v == "counterfeit") & gen).sum() / n_gen),
        "counterfeit_recall": float(((v == "counterfeit") & cf).sum() / n_cf),
        "miss_rate": float(((v == "genuine") & cf).sum() / n_cf),
        "inconclusive_rate": float((~decided).mean()) if len(v) else math.nan,
        "inconclusive_rate_genuine": float(((v == "inconclusive") & gen).sum() / n_gen),
        "inconclusive_rate_counterfeit": float(((v == "inconclusive") & cf).sum() / n_cf),
        "accuracy_when_decided": float(correct[decided].mean()) if decided.any() else math.nan,
    }


def breakdown(records: Sequence, labels: np.ndarray, p: np.ndarray, verdicts: Sequence[str]) -> dict:
    """Metrics per brand, per category and per (sneaker) model, where the manifest says."""
    keys: dict[str, Callable[[Any], str | None]] = {
        "brand": lambda r: r.brand,
        "category": lambda r: r.category,
        "model": lambda r: r.extra.get("model") or None,
    }
    out: dict[str, dict[str, dict[str, Any]]] = {}
    v = np.array(verdicts)
    for name, key in keys.items():
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            value = key(r)
            if value:
                groups[value].append(i)
        if not groups:
            continue
        out[name] = {}
        for value, idx_list in sorted(groups.items()):
            idx = np.array(idx_list)
            y = labels[idx]
            out[name][value] = {
                "n": len(idx),
                "n_counterfeit": int(y.sum()),
                "roc_auc": roc_auc(y, p[idx]),
                "accuracy": float(np.mean((p[idx] >= 0.5) == (y == 1))),
                **operating_point(y, list(v[idx])),
            }
    return out


def item_metrics(
    records: Sequence,
    labels: np.ndarray,
    p: np.ndarray,
    reasons: Sequence[Sequence[str]],
    decision: Decision,
    bins: int,
) -> dict[str, Any] | None:
    """The verdict investigators get: photos of one ``item_id`` combined as serving combines them.

    Each item's probability is :func:`model.decision.judge_item`'s (mean logit of its usable
    photos); ``None`` when no item has more than one photo here (the photo metrics say it all).
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[r.item_id or f"photo:{i}"].append(i)
    if all(len(g) == 1 for g in groups.values()):
        return None
    outcomes = [
        judge_item([(float(p[i]), tuple(reasons[i])) for i in idx], decision) for idx in groups.values()
    ]
    y = np.array([labels[idx[0]] for idx in groups.values()])
    p_item = np.array([o.counterfeit_probability for o in outcomes])
    sizes = Counter(len(g) for g in groups.values())
    return {
        "n": len(groups),
        "n_counterfeit": int(y.sum()),
        "photos_per_item": {str(k): v for k, v in sorted(sizes.items())},
        **score_metrics(y, p_item, bins),
        **operating_point(y, [o.verdict for o in outcomes]),
    }


SUBTLETY_BINS = ((0.0, 1 / 3, "obvious"), (1 / 3, 2 / 3, "medium"), (2 / 3, 1.0001, "subtle"))


def tell_breakdown(
    records: Sequence, labels: np.ndarray, p: np.ndarray, verdicts: Sequence[str]
) -> dict | None:
    """How well counterfeits are caught by what gives them away (synthetic data: boxed tells).

    Each group of counterfeits is scored against *all* genuine photos: ``roc_auc`` is the chance
    that a fake of the group scores above a genuine photo, ``counterfeit_recall`` the share the
    verdict catches. Groups: ``by_subtlety`` (of the fake's *easiest* tell, so ``subtle`` means
    every tell of the photo is subtle) and ``by_flag`` (fakes that carry the flag, alone or not;
    ``alone``: fakes whose only tell it is). ``None`` when no box records a subtlety.
    """
    v = np.array(verdicts)
    genuine = np.flatnonzero(labels == 0)
    easiest: dict[int, float] = {}
    flags_of: dict[int, set[str]] = {}
    for i, r in enumerate(records):
        tells = [b for b in r.boxes if b.name in FLAG_NAMES and b.subtlety is not None]
        if labels[i] == 1 and tells:
            easiest[i] = min(float(b.subtlety) for b in tells)
            flags_of[i] = {b.name for b in tells}
    if not easiest or not len(genuine):
        return None

    def group(idx: list[int]) -> dict[str, Any]:
        fakes = np.array(idx, dtype=np.int64)
        both = np.concatenate([genuine, fakes])
        return {
            "n": len(fakes),
            "roc_auc": roc_auc(labels[both], p[both]) if len(fakes) else math.nan,
            "counterfeit_recall": float(np.mean(v[fakes] == "counterfeit")) if len(fakes) else math.nan,
        }

    by_subtlety = {
        name: group([i for i, s in easiest.items() if lo <= s < hi]) for lo, hi, name in SUBTLETY_BINS
    }
    by_flag = {}
    for name in FLAG_NAMES:
        carrying = [i for i, f in flags_of.items() if name in f]
        if carrying:
            by_flag[name] = {
                **group(carrying),
                "alone": group([i for i in carrying if flags_of[i] == {name}]),
            }
    return {"by_subtlety": by_subtlety, "by_flag": by_flag}


# ----------------------------------------------------------------------------- probe


def probe_features(
    records: Sequence, *, image_size: int, resize: str, draft_size: int, workers: int
) -> np.ndarray:
    """Frozen ImageNet EfficientNet-Lite0 embeddings (pooled last feature map), no augmentation."""
    from training.train.inference import load_inputs

    net = AuthLensNet(NetworkSpec(backbone="efficientnet_lite0", pretrained="imagenet", drop_rate=0.0)).eval()
    net = net.to(memory_format=torch.channels_last)
    inputs = load_inputs(
        records, image_size=image_size, resize=resize, draft_size=draft_size, workers=workers
    )
    return predict(net, inputs, mean=net.mean, std=net.std, batch_size=64).embeddings


def _stratified_cap(records: Sequence, cap: int, seed: int) -> list:
    if len(records) <= cap:
        return list(records)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(records), size=cap, replace=False))
    return [records[i] for i in keep]


def linear_probe(
    train: Sequence,
    val: Sequence,
    evaluated: Sequence,
    *,
    image_size: int,
    resize: str,
    draft_size: int,
    workers: int,
    cfg: EvaluateConfig,
) -> tuple[dict[str, Any], np.ndarray]:
    """Logistic regression on frozen ImageNet features: the baseline fine-tuning must beat.

    ``C`` is chosen on ``val`` by ROC-AUC; the classifier is fitted on ``train`` only (the
    fine-tuned model also saw validation only for model selection and calibration).

    Returns:
        The probe's report section and its counterfeit probabilities on ``evaluated``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    train = _stratified_cap(train, cfg.probe_max_train, seed=0)
    kw = {"image_size": image_size, "resize": resize, "draft_size": draft_size, "workers": workers}
    x_train, x_val, x_eval = (probe_features(rs, **kw) for rs in (train, val, evaluated))
    y_train = np.array([label_of(r) for r in train])
    y_val = np.array([label_of(r) for r in val])
    y_eval = np.array([label_of(r) for r in evaluated])

    def fit(c: float):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000))
        return clf.fit(x_train, y_train)

    val_auc = {c: roc_auc(y_val, fit(c).predict_proba(x_val)[:, 1]) for c in PROBE_CS}
    best_c = max(PROBE_CS, key=lambda c: (np.nan_to_num(val_auc[c], nan=-1.0), -c))
    p = fit(best_c).predict_proba(x_eval)[:, 1]
    section = {
        "features": "efficientnet_lite0 ImageNet (frozen), global average pool, 1280-d",
        "classifier": "StandardScaler + LogisticRegression(class_weight=balanced)",
        "C": best_c,
        "val_roc_auc_by_C": {str(c): v for c, v in val_auc.items()},
        "n_train": len(train),
        **score_metrics(y_eval, p, cfg.ece_bins),
        "seconds": time.perf_counter() - start,
    }
    return section, p


# ----------------------------------------------------------------------------- out of distribution

FOREIGN_SAMPLES: tuple[str, ...] = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "text", "page", "brick", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "coins", "retina", "colorwheel", "clock",
)  # fmt: skip
"""scikit-image's bundled sample photos: people, animals, food, text, textures, micrographs."""


def foreign_photos() -> list[tuple[str, np.ndarray]]:
    """Photos that are not products, as ``(name, (H, W, 3) uint8)``; empty without scikit-image."""
    try:
        from skimage import data as skdata
    except ImportError:
        return []
    out = []
    for name in FOREIGN_SAMPLES:
        try:
            img = np.asarray(getattr(skdata, name)())
        except Exception:  # a sample missing from this scikit-image version
            continue
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out.append((name, np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)))
    return out


def ood_check(
    net: AuthLensNet, ckpt: Checkpoint, *, manifest: str | Path | None, workers: int
) -> dict[str, Any] | None:
    """Share of photos the model should not know (not products; another manifest) flagged as OOD."""
    from model.imaging import resize_for_model

    size = (ckpt.input.image_size, ckpt.input.image_size)
    assert ckpt.ood is not None
    stats = ood_stats(ckpt.ood)
    section: dict[str, Any] = {}
    samples = foreign_photos()
    if samples:
        inputs = torch.from_numpy(
            np.stack([resize_for_model(px, size, policy=ckpt.input.resize)[0] for _, px in samples])  # type: ignore[arg-type]
        )
        scores = stats.score(predict(net, inputs, mean=net.mean, std=net.std).embeddings)
        section["non_product_photos"] = {
            "source": "scikit-image sample photos",
            "n": len(samples),
            "flagged_rate": float(np.mean(scores > ckpt.ood.threshold)),
            "not_flagged": [
                name for (name, _), s in zip(samples, scores, strict=True) if s <= ckpt.ood.threshold
            ],
            "score_median": float(np.median(scores)),
        }
    if manifest is not None:
        from training.data.manifest import load_manifest

        records = load_manifest(manifest)
        inputs, _ = load_with_geometry(
            records,
            image_size=size[0],
            resize=ckpt.input.resize,
            draft_size=ckpt.input.draft_size,
            workers=workers,
        )
        scores = stats.score(predict(net, inputs, mean=net.mean, std=net.std).embeddings)
        section["other_manifest"] = {
            "source": str(manifest),
            "n": len(records),
            "flagged_rate": float(np.mean(scores > ckpt.ood.threshold)),
            "score_median": float(np.median(scores)),
        }
    return section or None


# ----------------------------------------------------------------------------- plots


def _plots(
    out: Path,
    labels: np.ndarray,
    p_uncal: np.ndarray,
    p: np.ndarray,
    p_probe: np.ndarray | None,
    verdicts: Sequence[str],
    worst: list[dict[str, Any]],
    bins: int,
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(5, 5))
    curves = [("fine-tuned", p)] + ([("linear probe", p_probe)] if p_probe is not None else [])
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
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=110)
    plt.close(fig)
    files["roc"] = f"{PLOTS_DIR}/roc.png"

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="lightgrey", lw=0.8)
    for name, scores in (("uncalibrated", p_uncal), ("calibrated", p)):
        rel = reliability(scores, labels, bins)
        ok = rel.counts > 0
        ax.plot(rel.confidence[ok], rel.frequency[ok], marker="o", label=f"{name} (ECE {rel.ece:.3f})")
    ax.set(
        xlabel="predicted counterfeit probability", ylabel="observed counterfeit share", title="Reliability"
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)
    files["reliability"] = f"{PLOTS_DIR}/reliability.png"

    columns = ("genuine", "counterfeit", "inconclusive")
    matrix = np.zeros((2, 3), dtype=int)
    for y, v in zip(labels, verdicts, strict=True):
        matrix[int(y), columns.index(v)] += 1
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="black" if n < matrix.max() / 2 else "white")
    ax.set_xticks(range(3), [f"verdict\n{c}" for c in columns])
    ax.set_yticks(range(2), [f"true {label}" for label in LABELS])
    ax.set_title("Confusion (verdicts with the calibrated thresholds)")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)
    files["confusion"] = f"{PLOTS_DIR}/confusion.png"

    if worst:
        cols = min(4, len(worst))
        rows = math.ceil(len(worst) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.5 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, item in zip(axes.flat, worst, strict=False):
            img = item["pixels"]
            ax.imshow(img)
            h, w = img.shape[:2]
            ax.imshow(item["cam"], cmap="jet", alpha=0.4, extent=(0, w, h, 0), interpolation="bilinear")
            for b in item["boxes"]:
                ax.add_patch(
                    matplotlib.patches.Rectangle(
                        (b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="lime", lw=1.2
                    )
                )
            ax.set_title(f"{item['label']} p={item['p']:.2f}\n{item['name']}", fontsize=8)
        fig.suptitle("Worst errors (map: counterfeit evidence; green: labelled boxes)")
        fig.tight_layout()
        fig.savefig(out / "worst_errors.png", dpi=100)
        plt.close(fig)
        files["worst_errors"] = f"{PLOTS_DIR}/worst_errors.png"
    return files


# ----------------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    """Human summary of a report: headline table (fine-tuned vs probe), operating point, breakdowns."""
    s = report["summary"]
    probe = report.get("probe") or {}
    m = report["metrics"]
    lines = [
        f"# Evaluation: {report['evaluated']['name']}",
        "",
        f"Checkpoint `{report['checkpoint']['path']}` (epoch {report['checkpoint']['epoch']}, "
        f"{report['checkpoint']['backbone']}, {report['checkpoint']['image_size']} px); "
        f"{s['n']} photos ({s['n_counterfeit']} counterfeit).",
        "",
        "| metric | fine-tuned | linear probe |",
        "| --- | --- | --- |",
    ]
    for key, title in (
        ("roc_auc", "ROC-AUC"),
        ("pr_auc", "PR-AUC"),
        ("accuracy", "accuracy at p=0.5"),
        ("recall_at_far_1pct", "counterfeit recall at 1% false accusations"),
        ("recall_at_far_5pct", "counterfeit recall at 5% false accusations"),
        ("ece", "ECE (calibrated)"),
    ):
        lines.append(f"| {title} | {_fmt(m[key])} | {_fmt(probe.get(key))} |")
    lines += [
        f"| ECE before calibration | {_fmt(m['ece_uncalibrated'])} | |",
        f"| ECE a perfectly calibrated model would show on these photos | {_fmt(m.get('ece_noise_floor'))} | |",
        "",
        "## Verdicts with the validation-chosen thresholds",
        "",
        f"Counterfeit at p >= {_fmt(report['decision']['counterfeit_threshold'], 4)}, genuine at "
        f"p <= {_fmt(report['decision']['genuine_threshold'], 4)} (temperature "
        f"{_fmt(report['decision']['temperature'])}).",
        "",
        "| | value |",
        "| --- | --- |",
    ]
    for key, value in report["operating_point"].items():
        lines.append(f"| {key.replace('_', ' ')} | {_fmt(value)} |")
    reasons = report["inconclusive_reasons"]
    if reasons:
        lines.append(f"| inconclusive reasons | {', '.join(f'{k}: {v}' for k, v in reasons.items())} |")
    flags = report["flags"]
    lines += ["", "## Flags", ""]
    if flags["labelled_photos"]:
        lines += [
            f"Macro-F1 {_fmt(flags['macro_f1'])} over {flags['labelled_photos']} flag-labelled photos.",
            "",
        ]
        lines += ["| flag | F1 | positives |", "| --- | --- | --- |"]
        for name in FLAG_NAMES:
            lines.append(f"| {name} | {_fmt(flags['f1'][name])} | {flags['positives'][name]} |")
    else:
        lines.append("No photo here has flag labels.")
    loc = report["localisation"]
    lines += ["", "## Where the map points", ""]
    if loc["n"]:
        lines.append(
            f"Counterfeit photos with {loc['target']} boxes: {loc['n']}. Map peak inside a box: "
            f"{_fmt(loc['peak_in_box'])}; peak cell touching a box: {_fmt(loc['cell_overlaps_box'])}; "
            f"a random peak would land inside {_fmt(loc['chance'])}."
        )
    else:
        lines.append("No counterfeit photo here has boxes.")
    items = report.get("items")
    if items:
        lines += [
            "",
            "## Items (photos of one item_id combined, as serving does)",
            "",
            f"{items['n']} items ({items['n_counterfeit']} counterfeit); photos per item: "
            + ", ".join(f"{k}: {v}" for k, v in items["photos_per_item"].items())
            + ".",
            "",
            "| ROC-AUC | recall at 1% false accusations | recall at 5% | ECE | false accusations | recall | inconclusive |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {_fmt(items['roc_auc'])} | {_fmt(items['recall_at_far_1pct'])} | {_fmt(items['recall_at_far_5pct'])} "
            f"| {_fmt(items['ece'])} | {_fmt(items['false_accusation_rate'])} | {_fmt(items['counterfeit_recall'])} "
            f"| {_fmt(items['inconclusive_rate'])} |",
        ]
    tells = report.get("tells")
    if tells:
        lines += [
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
            lines.append(
                f"| easiest tell {name} | {g['n']} | {_fmt(g['roc_auc'])} | {_fmt(g['counterfeit_recall'])} |"
            )
        for name, g in tells["by_flag"].items():
            a = g["alone"]
            lines.append(
                f"| with {name} (alone: {a['n']}, AUC {_fmt(a['roc_auc'])}) | {g['n']} | "
                f"{_fmt(g['roc_auc'])} | {_fmt(g['counterfeit_recall'])} |"
            )
    for name, groups in report["breakdowns"].items():
        lines += [
            "",
            f"## By {name}",
            "",
            "| value | n | counterfeit | ROC-AUC | false accusations | recall | inconclusive |",
        ]
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for value, g in groups.items():
            lines.append(
                f"| {value} | {g['n']} | {g['n_counterfeit']} | {_fmt(g['roc_auc'])} | "
                f"{_fmt(g['false_accusation_rate'])} | {_fmt(g['counterfeit_recall'])} | {_fmt(g['inconclusive_rate'])} |"
            )
    lines += ["", "## Plots", ""]
    lines += [f"![{k}]({v})" for k, v in report["plots"].items()]
    return "\n".join(lines) + "\n"


@dataclass
class EvalTarget:
    """The photos to evaluate and what to call them."""

    name: str
    records: list


def select_records(ckpt: Checkpoint, *, split: str, manifest: str | Path | None) -> tuple[EvalTarget, Any]:
    """The evaluated photos (a split of the run, or every photo of another manifest) and the run's splits."""
    from training.data.manifest import load_manifest

    split_manifest = ckpt.data.get("split_manifest")
    run_records = None
    if split_manifest and Path(split_manifest).is_file():
        run_records = load_manifest(split_manifest)
    if manifest is not None:
        records = load_manifest(manifest)
        target = EvalTarget(name=f"all of {manifest}", records=records)
    else:
        if run_records is None:
            raise DataError(
                f"The checkpoint's split manifest {split_manifest!r} is missing; pass --manifest to "
                "evaluate on another dataset, or re-train to write it."
            )
        if split not in ("train", "val", "test"):
            raise DataError(f"Unknown split {split!r}. Allowed: train, val, test.")
        records = [r for r in run_records if r.split == split]
        target = EvalTarget(name=f"{split} split of {split_manifest}", records=records)
    if not target.records:
        raise DataError(f"Nothing to evaluate: the {target.name} has no photos.")
    return target, run_records


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    split: str = "test",
    manifest: str | Path | None = None,
    out_dir: str | Path | None = None,
    probe: bool | None = None,
    workers: int | None = None,
    ood_manifest: str | Path | None = None,
    show_progress: bool = True,
    tracker: Any = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` and write the report files.

    Args:
        checkpoint: A ``best.pt`` written by training (calibrated).
        split: Which split of the run's ``split.csv`` to evaluate (ignored with ``manifest``).
        manifest: Evaluate every photo of this manifest instead (e.g. synthetic data of new seeds).
        out_dir: Where to write; default the checkpoint's folder for the test split, else
            ``eval-<split>`` / ``eval-<manifest name>`` beside it.
        probe: Fit the linear-probe baseline (default: the run's ``evaluate.probe``).
        workers: Loader workers (default: the run's ``data.num_workers``).
        ood_manifest: Photos the model should flag as out of distribution (e.g. another category).
        show_progress: Print a short status line per stage.
        tracker: A :class:`training.train.tracking.Tracker` to log the report to.

    Returns:
        The report (also written as ``report.json``).

    Raises:
        CheckpointError, DataError, ManifestError: before any computation, naming the problem.
    """
    started = time.perf_counter()
    tune_cpu()
    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    if ckpt.ood is None or ckpt.decision is None:
        if ckpt.train_state is not None:
            raise CheckpointError(
                f"{path} holds training state, not a calibrated model; evaluate {path.parent / 'best.pt'}."
            )
        raise CheckpointError(
            f"{path} is not calibrated (no OOD reference): training stopped before it finished. "
            f"Finish it with authlens train --resume {path.parent / 'last.pt'}."
        )
    cfg = TrainConfig.model_validate(ckpt.config) if ckpt.config else None
    ecfg = cfg.evaluate if cfg is not None else EvaluateConfig()
    do_probe = ecfg.probe if probe is None else probe
    n_workers = workers if workers is not None else (cfg.data.num_workers if cfg is not None else 0)
    target, run_records = select_records(ckpt, split=split, manifest=manifest)
    if out_dir is None:
        if manifest is None and split == "test":
            out_dir = path.parent
        else:
            out_dir = path.parent / f"eval-{split if manifest is None else Path(manifest).stem or 'manifest'}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = ckpt.build_network().to(memory_format=torch.channels_last)
    records = target.records
    size = ckpt.input.image_size
    labels = np.array([label_of(r) for r in records])

    def status(msg: str) -> None:
        if show_progress:
            log_event(log, "evaluate", stage=msg, seconds=round(time.perf_counter() - started, 1))

    status(f"decoding {len(records)} photos")
    inputs, geometries = load_with_geometry(
        records,
        image_size=size,
        resize=ckpt.input.resize,
        draft_size=ckpt.input.draft_size,
        workers=n_workers,
    )
    status("scoring")
    t0 = time.perf_counter()
    outputs: Outputs = predict(net, inputs, mean=net.mean, std=net.std, batch_size=64, with_cams=True)
    infer_s = time.perf_counter() - t0
    assert outputs.cams is not None
    p_uncal = calibrated_probability(outputs.logits, 1.0)
    decision = ckpt.decision
    p = calibrated_probability(outputs.logits, decision.temperature)
    stats = ood_stats(ckpt.ood)
    ood_scores = stats.score(outputs.embeddings)
    sharp = np.array([sharpness(inputs[i].numpy()) for i in range(len(records))])
    outcomes = []
    for i, g in enumerate(geometries):
        reasons = usability_reasons(
            min_side=min(g.original_size),
            sharpness=float(sharp[i]),
            ood_score=float(ood_scores[i]),
            decision=decision,
            ood_threshold=ckpt.ood.threshold,
        )
        outcomes.append(judge_image(float(p[i]), reasons, decision))
    verdicts = [o.verdict for o in outcomes]
    reason_counts = Counter(r for o in outcomes for r in o.reasons)

    # flags
    flag_probs = sigmoid(outputs.flag_logits)
    flag_t = np.stack([flag_target(r)[0] for r in records])
    flag_m = np.array([flag_target(r)[1] for r in records])
    thresholds = decision.flag_thresholds
    flags_section = {
        "labelled_photos": int(flag_m.sum()),
        "macro_f1": flag_macro_f1(flag_probs, flag_t, flag_m, thresholds),
        "f1": flag_f1(flag_probs, flag_t, flag_m, thresholds),
        "positives": {n: int(flag_t[flag_m > 0.5, j].sum()) for j, n in enumerate(FLAG_NAMES)},
        "thresholds": dict(thresholds),
    }

    # localisation on counterfeits
    loc_rows: list[dict[str, float]] = []
    kinds: Counter[str] = Counter()
    for i, r in enumerate(records):
        if labels[i] != 1:
            continue
        kind, boxes = target_boxes(r)
        if not boxes:
            continue
        kinds[kind] += 1
        loc_rows.append(localise(outputs.cams[i], geometries[i], (size, size), boxes))
    loc_section: dict[str, Any] = {
        "target": kinds.most_common(1)[0][0] if kinds else "none",
        "n": len(loc_rows),
        **{
            k: float(np.mean([row[k] for row in loc_rows])) if loc_rows else math.nan
            for k in ("peak_in_box", "cell_overlaps_box", "chance")
        },
        "map_size": list(outputs.cams.shape[1:]),
    }

    # probe
    probe_section: dict[str, Any] | None = None
    p_probe = None
    if do_probe:
        if run_records is None:
            log.warning("probe_skipped", extra={"fields": {"reason": "the run's split manifest is missing"}})
        else:
            status("linear probe: extracting frozen ImageNet features")
            probe_section, p_probe = linear_probe(
                [r for r in run_records if r.split == "train"],
                [r for r in run_records if r.split == "val"],
                records,
                image_size=size,
                resize=ckpt.input.resize,
                draft_size=ckpt.input.draft_size,
                workers=n_workers,
                cfg=ecfg,
            )

    status("out-of-distribution check")
    ood_extra = ood_check(net, ckpt, manifest=ood_manifest, workers=n_workers)

    # worst errors: genuine with the highest p, counterfeits with the lowest
    err = np.where(labels == 1, 1.0 - p, p)
    worst_idx = [int(i) for i in np.argsort(-err)[: ecfg.worst_errors] if err[i] > 0.5] or [
        int(i) for i in np.argsort(-err)[: min(4, ecfg.worst_errors)]
    ]
    worst = []
    for i in worst_idx:
        g = geometries[i]
        _, boxes = target_boxes(records[i])
        model_boxes = [
            (
                (b[0] / g.scale_x) + g.pad_x,
                (b[1] / g.scale_y) + g.pad_y,
                (b[2] / g.scale_x) + g.pad_x,
                (b[3] / g.scale_y) + g.pad_y,
            )
            for b in boxes
        ]
        worst.append(
            {
                "pixels": inputs[i].numpy(),
                "cam": outputs.cams[i],
                "boxes": model_boxes,
                "label": records[i].label,
                "p": float(p[i]),
                "name": Path(records[i].file).name[:28],
            }
        )
    status("plots")
    plots = _plots(out / PLOTS_DIR, labels, p_uncal, p, p_probe, verdicts, worst, ecfg.ece_bins)

    metrics = {
        **score_metrics(labels, p, ecfg.ece_bins),
        "ece_uncalibrated": reliability(p_uncal, labels, ecfg.ece_bins).ece,
    }
    op = operating_point(labels, verdicts)
    items_section = item_metrics(records, labels, p, [o.reasons for o in outcomes], decision, ecfg.ece_bins)
    summary = {
        "evaluated": target.name,
        "n": len(records),
        "n_counterfeit": int(labels.sum()),
        **metrics,
        "inconclusive_rate": op["inconclusive_rate"],
        "false_accusation_rate": op["false_accusation_rate"],
        "counterfeit_recall": op["counterfeit_recall"],
        "flag_macro_f1": flags_section["macro_f1"],
        "localisation_target": loc_section["target"],
        "localisation_peak_in_box": loc_section["peak_in_box"],
        "localisation_chance": loc_section["chance"],
        "ood_rate": float(np.mean(ood_scores > ckpt.ood.threshold)),
    }
    if items_section is not None:
        for key in ("n", "roc_auc", "recall_at_far_1pct", "recall_at_far_5pct", "ece"):
            summary[f"item_{key}"] = items_section[key]
    if ood_extra and "non_product_photos" in ood_extra:
        summary["ood_rate_non_product_photos"] = ood_extra["non_product_photos"]["flagged_rate"]
    if probe_section is not None:
        for key in ("roc_auc", "pr_auc", "recall_at_far_1pct", "recall_at_far_5pct", "ece"):
            summary[f"probe_{key}"] = probe_section[key]
    report = {
        "summary": summary,
        "evaluated": {
            "name": target.name,
            "split": None if manifest else split,
            "manifest": str(manifest) if manifest else None,
        },
        "checkpoint": {
            "path": str(path),
            "epoch": ckpt.epoch,
            "backbone": ckpt.spec.backbone,
            "image_size": size,
            "git_commit": ckpt.git_commit,
            "data": {k: v for k, v in ckpt.data.items()},
            "validation": ckpt.metrics,
        },
        "decision": decision.model_dump(mode="json"),
        "metrics": metrics,
        "operating_point": op,
        "inconclusive_reasons": dict(reason_counts),
        "ood": {
            "threshold": ckpt.ood.threshold,
            "quantile": ckpt.ood.quantile,
            "rate": summary["ood_rate"],
            "score_median": float(np.median(ood_scores)),
            "checks": ood_extra,
        },
        "flags": flags_section,
        "localisation": loc_section,
        "breakdowns": breakdown(records, labels, p, verdicts),
        "tells": tell_breakdown(records, labels, p, verdicts),
        "items": items_section,
        "probe": probe_section,
        "plots": plots,
        "files": {
            "folder": str(out),
            "report_json": str(out / REPORT_JSON),
            "report_md": str(out / REPORT_MD),
        },
        "timing": {
            "seconds": time.perf_counter() - started,
            "inference_images_per_s": len(records) / max(infer_s, 1e-9),
            "threads": torch.get_num_threads(),
        },
    }
    report = _nan_to_none(report)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(markdown(report), encoding="utf-8")
    with (out / PREDICTIONS_CSV).open("w", newline="", encoding="utf-8") as fh:
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
            raised = [n for j, n in enumerate(FLAG_NAMES) if flag_probs[i, j] >= thresholds[n]]
            writer.writerow(
                [
                    str(r.file),
                    r.label,
                    f"{p[i]:.6f}",
                    verdicts[i],
                    ";".join(outcomes[i].reasons),
                    f"{ood_scores[i]:.4f}",
                    ";".join(raised),
                    "" if p_probe is None else f"{p_probe[i]:.6f}",
                ]
            )
    if tracker is not None:
        tracker.log_metrics({f"test_{k}": v for k, v in summary.items()}, step=ckpt.epoch)
        for name in (REPORT_JSON, REPORT_MD, PREDICTIONS_CSV):
            tracker.log_artifact(out / name, artifact_path="evaluation")
        tracker.log_artifact(out / PLOTS_DIR, artifact_path="evaluation/plots")
    status("done")
    return report
