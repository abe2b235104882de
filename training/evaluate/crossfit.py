"""The report of a cross-fitted run: every figure from out-of-fold predictions, with the folds' spread.

Each photo is scored by the fold model that did not train on it, and judged with the decision
settings fitted on all those predictions (:mod:`training.train.crossfit`), exactly as
:mod:`training.evaluate.run` judges a test split. Beside the usual sections: ``folds`` (the
metrics of each fold, their mean and spread) and a linear probe cross-fitted on the same folds
(its regularisation chosen inside each training part, never on the held-out fold).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.logs import log_event
from training.checkpoint import load_checkpoint
from training.config import EvaluateConfig, TrainConfig
from training.data.dataset import label_of, load_with_geometry
from training.evaluate.ood import ood_check, ood_section
from training.evaluate.plots import PLOTS_DIR, plot_report, worst_errors
from training.evaluate.probe import PROBE_BACKBONE, PROBE_CS, probe_features
from training.evaluate.report import nan_to_none, write_report
from training.evaluate.run import _assemble, log, report_sections
from training.evaluate.scores import Scored, judge_outputs, score_metrics
from training.train.calibration import rate_upper_bound
from training.train.inference import Outputs

FOLD_METRICS: tuple[str, ...] = ("roc_auc", "recall_at_far_1pct", "recall_at_far_5pct", "ece")


def fold_spread(scored: Scored, fold_of: np.ndarray, bins: int) -> dict[str, Any]:
    """The threshold-free metrics of each fold's held-out photos, and their mean, spread and range."""
    per_fold = []
    for i in range(int(fold_of.max()) + 1):
        idx = np.flatnonzero(fold_of == i)
        m = score_metrics(scored.labels[idx], scored.p[idx], bins)
        per_fold.append({"fold": i, "n": len(idx), **{k: m[k] for k in FOLD_METRICS}})
    out: dict[str, Any] = {"k": len(per_fold), "per_fold": per_fold}
    for key in FOLD_METRICS:
        values = np.array([f[key] for f in per_fold], dtype=np.float64)
        out[key] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return out


def crossfit_probe(
    records: Sequence, fold_of: np.ndarray, ckpt: Any, cfg: EvaluateConfig, workers: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Logistic regression on frozen ImageNet features, cross-fitted on the same folds.

    For each fold, ``C`` is chosen by ROC-AUC with the training part's own folds as inner
    cross-validation, then the probe predicts the held-out fold.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import PredefinedSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    x = probe_features(
        records,
        image_size=ckpt.input.image_size,
        resize=ckpt.input.resize,
        draft_size=ckpt.input.draft_size,
        workers=workers,
    )
    y = np.array([label_of(r) for r in records])
    p = np.zeros(len(y))
    chosen = []
    for i in range(int(fold_of.max()) + 1):
        train, held = fold_of != i, fold_of == i
        inner = PredefinedSplit(fold_of[train])
        clf = LogisticRegressionCV(
            Cs=list(PROBE_CS), cv=inner, scoring="roc_auc", class_weight="balanced", max_iter=3000
        )
        model = make_pipeline(StandardScaler(), clf).fit(x[train], y[train])
        p[held] = model.predict_proba(x[held])[:, 1]
        chosen.append(float(model[-1].C_[0]))
    section = {
        "features": f"{PROBE_BACKBONE} ImageNet (frozen), global average pool, {x.shape[1]}-d",
        "classifier": "StandardScaler + LogisticRegression(class_weight=balanced), C by inner cross-validation",
        "C_per_fold": chosen,
        "n_train": int(len(y) - np.bincount(fold_of).max()),
        **score_metrics(y, p, cfg.ece_bins),
        "seconds": time.perf_counter() - start,
    }
    return section, p


def accusation_bound(scored: Scored, confidence: float) -> dict[str, Any]:
    """How many genuine photos the ``counterfeit`` verdict accused, and the rate's upper bound."""
    genuine = scored.labels == 0
    accused = int(np.sum(np.array(scored.verdicts)[genuine] == "counterfeit"))
    n = int(genuine.sum())
    return {
        "genuine_photos": n,
        "accused": accused,
        "confidence": confidence,
        "upper_bound": rate_upper_bound(accused, n, confidence),
    }


def crossfit_report(
    best: Path,
    records: list,
    oof: Outputs,
    knn: np.ndarray,
    fold_of: np.ndarray,
    *,
    seconds: dict[str, Any],
    ood_manifest: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``predictions.csv`` and plots beside ``best``.

    Args:
        best: The cross-fitted run's ``best.pt`` (final model, settings fitted on the folds).
        records: Every photo, in the order of the other arrays.
        oof: Out-of-fold outputs (cams included).
        knn: ``(N,)`` out-of-fold kNN OOD scores (each photo against the other folds).
        fold_of: ``(N,)`` fold of each photo.
        seconds: Training time of each fold and of the final model.
        ood_manifest: Photos that should be called out of distribution (another category).
        show_progress: Log each stage.
    """
    started = time.perf_counter()
    ckpt = load_checkpoint(best)
    assert ckpt.decision is not None and ckpt.ood is not None
    cfg = TrainConfig.model_validate(ckpt.config)
    ecfg, workers = cfg.evaluate, min(cfg.data.num_workers, 2)
    if show_progress:
        log_event(log, "evaluate", stage=f"out-of-fold report on {len(records)} photos")
    inputs, geometries = load_with_geometry(
        records,
        image_size=ckpt.input.image_size,
        resize=ckpt.input.resize,
        draft_size=ckpt.input.draft_size,
        workers=workers,
    )
    scored = judge_outputs(oof, ckpt.decision, knn, ckpt.ood.threshold, records, inputs, geometries)
    sections = report_sections(ckpt, records, scored, ecfg.ece_bins)
    probe_section, p_probe = (
        crossfit_probe(records, fold_of, ckpt, ecfg, workers) if ecfg.probe else (None, None)
    )
    net = ckpt.build_network()
    sections["ood"] = ood_section(ckpt, knn, ood_check(net, ckpt, manifest=ood_manifest, workers=workers))
    sections["probe"] = probe_section
    out = best.parent
    plots = plot_report(
        out / PLOTS_DIR, scored, p_probe, worst_errors(records, scored, ecfg.worst_errors), ecfg.ece_bins
    )
    name = f"out-of-fold predictions of all {len(records)} photos ({int(fold_of.max()) + 1} folds)"
    evaluated = {"name": name, "split": None, "manifest": cfg.data.manifest}
    report = _assemble(best, ckpt, evaluated, scored, sections, plots=plots, out=out, started=started)
    folds = fold_spread(scored, fold_of, ecfg.ece_bins)
    bound = accusation_bound(scored, cfg.calibration.far_confidence or 0.95)
    report["folds"] = folds
    report["false_accusation_bound"] = bound
    report["training"] = {"seconds": seconds}
    report["summary"].update(
        {
            "folds": folds["k"],
            "roc_auc_fold_std": folds["roc_auc"]["std"],
            "false_accusation_bound": bound["upper_bound"],
        }
    )
    if probe_section is not None:
        report["summary"]["finetune_minus_probe_roc_auc"] = (
            report["summary"]["roc_auc"] - probe_section["roc_auc"]
        )
    report = nan_to_none(report)
    write_report(out, report, records, scored, p_probe)
    return report
