"""K-fold cross-fitting: honest figures, temperature and thresholds from every photo of a small set.

Usage: ``authlens train --config configs/sneakers.yaml`` with ``data.folds: 5``.

A split of 1,099 photos into 713/166/220 fits thresholds on 166 photos and reports on 220. Here
every photo is held out once: the photos are dealt into K folds (each near-duplicate cluster or
item in one fold, both labels in every fold: scikit-learn's ``StratifiedGroupKFold``); a model is
trained on K-1 folds with the run's recipe and a fixed number of epochs (no epoch is chosen on the
held-out fold) and predicts the fold it did not see. Those out-of-fold predictions give

* the report (:mod:`training.evaluate.crossfit`), with the spread across folds;
* the temperature, the verdict thresholds (the false-accusation rate bounded with stated
  confidence over all genuine photos) and the flag thresholds;
* the out-of-distribution threshold: each photo's kNN score against the *other* folds' photos.

Then one model is trained on all photos with the same recipe; it is what ``best.pt`` holds and
what export ships, with the decision settings fitted on the folds. (A model trained on all photos
is at least as good as the fold models, so the settings err on the careful side.)

Layout: ``RUN/fold{i}/`` (each fold's run and ``oof.npz``), ``RUN/full/`` (the final run),
``RUN/best.pt``, ``RUN/folds.csv`` (every photo with its fold) and the report. ``--resume``
skips finished folds and continues an interrupted one.
"""

from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.logs import log_event
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data.dataset import DataError, Splits, label_of, load_with_geometry
from training.data.manifest import Record
from training.train.inference import Outputs, predict
from training.train.state import BEST, LAST

log = logging.getLogger(__name__)

FOLDS_FILE = "folds.csv"
OOF_FILE = "oof.npz"
FULL_DIR = "full"


def assign_folds(records: list[Record], groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold of every photo: groups never straddle folds, each fold has both labels.

    Args:
        records: The photos.
        groups: ``(N,)`` cluster of each (:func:`training.data.split.group_records`).
        k: Number of folds.
        seed: Shuffles which groups go together.

    Raises:
        DataError: ``k`` exceeds the number of clusters of the smaller class (a fold would lack it).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.array([label_of(r) for r in records])
    clusters = {c: len(set(groups[y == c].tolist())) for c in (0, 1)}
    smaller = min(clusters, key=lambda c: clusters[c])
    if k > clusters[smaller]:
        name = "genuine" if smaller == 0 else "counterfeit"
        raise DataError(
            f"data.folds is {k}, but the {name} photos form only {clusters[smaller]} clusters "
            f"(near-duplicates and items count once); use at most {clusters[smaller]} folds."
        )
    folds = np.empty(len(records), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, held) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        folds[held] = i
    return folds


def fold_splits(records: list[Record], folds: np.ndarray, i: int) -> Splits:
    """Fold ``i`` held out (as ``val``, only watched: nothing is chosen on it), the rest to train."""
    from dataclasses import replace

    train = [replace(r, split="train") for r, f in zip(records, folds, strict=True) if f != i]
    held = [replace(r, split="val") for r, f in zip(records, folds, strict=True) if f == i]
    return Splits(train=train, val=held, test=[])


@dataclass
class FoldResult:
    """What one fold gives the cross-fit: its held-out predictions and in-domain OOD scores."""

    index: np.ndarray  # (n_i,) positions of the held-out photos among all records
    outputs: Outputs  # held-out outputs, cams included
    knn: np.ndarray  # (n_i,) kNN scores of the held-out photos against the fold's training photos
    seconds: float  # training time of the fold

    def save(self, path: Path) -> None:
        o = self.outputs
        assert o.cams is not None
        np.savez(
            path,
            index=self.index,
            logits=o.logits,
            flag_logits=o.flag_logits,
            embeddings=o.embeddings,
            cams=o.cams,
            knn=self.knn,
            seconds=np.array(self.seconds),
        )

    @classmethod
    def load(cls, path: Path) -> FoldResult:
        with np.load(path, allow_pickle=False) as z:
            out = Outputs(z["logits"], z["flag_logits"], z["embeddings"], z["cams"])
            return cls(z["index"], out, z["knn"], float(z["seconds"]))


def _sub_config(cfg: TrainConfig, run_dir: Path, name: str) -> TrainConfig:
    """``cfg`` for one fold (or the final model): its own folder, the last epoch kept, no evaluation."""
    return cfg.model_copy(
        update={
            "run": cfg.run.model_copy(update={"output_dir": str(run_dir), "name": name}),
            "train": cfg.train.model_copy(update={"select": "last"}),
            "evaluate": cfg.evaluate.model_copy(update={"after_training": False}),
            "data": cfg.data.model_copy(update={"folds": 0}),
        }
    )


def _predict_all(ckpt_path: Path, records: list[Record], cfg: TrainConfig) -> tuple[Outputs, Any, list]:
    """Outputs (cams included), inputs and geometries of ``records`` under a run's ``best.pt``."""
    ckpt = load_checkpoint(ckpt_path)
    net = ckpt.build_network().to(memory_format=torch.channels_last)
    inputs, geometries = load_with_geometry(
        records,
        image_size=cfg.data.image_size,
        resize=cfg.data.resize,
        draft_size=cfg.data.draft_size,
        workers=min(cfg.data.num_workers, 2),
    )
    out = predict(
        net, inputs, mean=net.mean, std=net.std, batch_size=cfg.train.eval_batch_size, with_cams=True
    )
    return out, inputs, geometries


def _sub_run(
    sub_cfg: TrainConfig, splits: Splits, *, resume: bool, force: bool, show_progress: bool
) -> float:
    """Train one fold or the final model (continuing it where it stopped); returns its training seconds."""
    from training.train.run import run

    run_dir = Path(sub_cfg.run.output_dir) / sub_cfg.run.name
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    again = resume and (run_dir / LAST).is_file()
    result = run(sub_cfg, resume=again or None, splits=splits, calibrate=False, show_progress=show_progress)
    history = load_checkpoint(result.last).train_state or {}
    return float(history.get("run_state", {}).get("train_seconds", 0.0))


def run_fold(
    cfg: TrainConfig,
    records: list[Record],
    folds: np.ndarray,
    i: int,
    run_dir: Path,
    *,
    resume: bool,
    force: bool,
    show_progress: bool,
) -> FoldResult:
    """Train on every fold but ``i`` and predict fold ``i`` (cached in ``fold{i}/oof.npz``)."""
    from training.train.calibration import knn_scores

    sub_cfg = _sub_config(cfg, run_dir, f"fold{i}")
    fold_dir = run_dir / sub_cfg.run.name
    if resume and not force and (fold_dir / OOF_FILE).is_file():
        log_event(log, "fold_done_before", fold=i, path=str(fold_dir / OOF_FILE))
        return FoldResult.load(fold_dir / OOF_FILE)
    log_event(log, "fold_start", fold=i, folds=int(folds.max()) + 1, held_out=int((folds == i).sum()))
    splits = fold_splits(records, folds, i)
    seconds = _sub_run(sub_cfg, splits, resume=resume, force=force, show_progress=show_progress)
    out, _, _ = _predict_all(fold_dir / BEST, splits.val + splits.train, sub_cfg)
    n_held = len(splits.val)
    held = Outputs(
        out.logits[:n_held],
        out.flag_logits[:n_held],
        out.embeddings[:n_held],
        out.cams[:n_held],  # type: ignore[index]
    )
    knn = knn_scores(out.embeddings[n_held:], held.embeddings, cfg.calibration.ood_k)
    result = FoldResult(index=np.flatnonzero(folds == i), outputs=held, knn=knn, seconds=seconds)
    result.save(fold_dir / OOF_FILE)
    return result


def pool(results: list[FoldResult], n: int) -> tuple[Outputs, np.ndarray, np.ndarray]:
    """Out-of-fold outputs, kNN scores and fold of every photo, in record order."""
    first = results[0].outputs
    assert first.cams is not None
    logits = np.zeros(n, np.float32)
    flags = np.zeros((n, first.flag_logits.shape[1]), np.float32)
    embs = np.zeros((n, first.embeddings.shape[1]), np.float32)
    cams = np.zeros((n, *first.cams.shape[1:]), np.float32)
    knn = np.zeros(n, np.float64)
    fold_of = np.full(n, -1, np.int64)
    for i, r in enumerate(results):
        o = r.outputs
        logits[r.index], flags[r.index], embs[r.index] = o.logits, o.flag_logits, o.embeddings
        cams[r.index], knn[r.index], fold_of[r.index] = o.cams, r.knn, i
    if (fold_of < 0).any():
        raise DataError(f"{int((fold_of < 0).sum())} photos have no out-of-fold prediction.")
    return Outputs(logits, flags, embs, cams), knn, fold_of


def save_folds(records: list[Record], folds: np.ndarray, path: Path) -> None:
    """Every photo with its label, item and fold (CSV), to see and reproduce the cross-fit."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "item_id", "fold"])
        for r, f in zip(records, folds, strict=True):
            writer.writerow([str(r.file), r.label, r.item_id or "", int(f)])


def calibrate_crossfit(
    cfg: TrainConfig, records: list[Record], oof: Outputs, knn: np.ndarray, run_dir: Path
) -> Path:
    """``RUN/best.pt``: the final model with the decision settings and OOD reference of the folds.

    Temperature, verdict and flag thresholds come from the out-of-fold predictions of every
    photo; the OOD reference is the final model's embeddings of every photo, thresholded on the
    out-of-fold kNN scores; the blur floor on every photo's input.
    """
    from model.decision import sigmoid
    from model.imaging import sharpness
    from training.checkpoint import save_checkpoint
    from training.data.dataset import flag_target
    from training.train.calibrate import fit_ood_reference
    from training.train.calibration import fit_calibration, fit_knn_ood, fit_min_sharpness, labelled_flags

    labels = np.array([label_of(r) for r in records])
    flag_t = np.stack([flag_target(r)[0] for r in records])  # (N, F)
    flag_m = np.array([flag_target(r)[1] for r in records])  # (N,)
    c = cfg.calibration
    decision = fit_calibration(
        oof.logits,
        labels,
        sigmoid(oof.flag_logits),
        flag_t,
        flag_m,
        c,
        trained=labelled_flags(flag_t, flag_m),
    )
    final_path = run_dir / FULL_DIR / BEST
    final = load_checkpoint(final_path)
    out, inputs, _ = _predict_all(final_path, records, cfg)
    if c.min_sharpness is None:
        sharp = np.array([sharpness(x) for x in inputs.numpy()])
        decision = decision.model_copy(
            update={"min_sharpness": fit_min_sharpness(sharp, c.sharpness_quantile)}
        )
    if c.ood_method == "knn":
        ood = fit_knn_ood(
            out.embeddings, knn, k=c.ood_k, quantile=c.ood_quantile, max_reference=c.ood_max_reference
        )
    else:  # Mahalanobis, thresholded on the out-of-fold embeddings (each from its fold's model)
        ood = fit_ood_reference(out.embeddings, labels, oof.embeddings, cfg)
    final.decision, final.ood = decision, ood
    final.data = {**final.data, "folds": cfg.data.folds, "folds_file": str((run_dir / FOLDS_FILE).resolve())}
    path = run_dir / BEST
    save_checkpoint(path, final)
    log_event(
        log,
        "calibrated",
        photos=len(records),
        temperature=round(decision.temperature, 4),
        counterfeit_threshold=round(decision.counterfeit_threshold, 4),
        genuine_threshold=round(decision.genuine_threshold, 4),
        flags=list(decision.flag_thresholds),
        ood_threshold=round(ood.threshold, 4),
    )
    return path


def run_crossfit(
    cfg: TrainConfig, *, resume: bool = False, force: bool = False, show_progress: bool = True
) -> dict[str, Any]:
    """Cross-fit ``data.folds`` folds, train the final model, calibrate it and write the report.

    Args:
        cfg: The resolved configuration (``data.folds`` >= 2).
        resume: Continue: finished folds are reused, an interrupted one resumes from its ``last.pt``.
        force: Start over, discarding what the run folder holds.
        show_progress: Show progress bars.

    Returns:
        ``{"best": path, "report": report or None, "seconds": {...}}``.

    Raises:
        RunError: the run folder holds a run and neither ``resume`` nor ``force`` is given.
        DataError, ManifestError: the data cannot be cross-fitted (named).
    """
    from model.configio import dump_config
    from training.data.manifest import load_manifests
    from training.data.split import group_records
    from training.train.run import RunError
    from training.train.state import CONFIG_FILE

    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    if run_dir.exists() and any(run_dir.iterdir()) and not (resume or force):
        raise RunError(
            f"{run_dir} already holds a run. Continue it with --resume, start over with --force, "
            "or choose another name with --set run.name=NAME."
        )
    records = load_manifests(cfg.data.manifest, cfg.data.extra_manifests)
    if len({r.label for r in records}) < 2:
        raise DataError(f"The dataset {cfg.data.manifest} needs genuine and counterfeit photos to cross-fit.")
    folds = assign_folds(records, group_records(records), cfg.data.folds, cfg.data.split_seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")
    save_folds(records, folds, run_dir / FOLDS_FILE)
    kw = {"resume": resume, "force": force, "show_progress": show_progress}
    results = [run_fold(cfg, records, folds, i, run_dir, **kw) for i in range(cfg.data.folds)]
    oof, knn, fold_of = pool(results, len(records))
    all_photos = Splits(train=[replace(r, split="train") for r in records], val=[], test=[])
    full_seconds = _sub_run(_sub_config(cfg, run_dir, FULL_DIR), all_photos, **kw)
    best = calibrate_crossfit(cfg, records, oof, knn, run_dir)
    seconds = {"folds": [r.seconds for r in results], "full": full_seconds}
    report = None
    if cfg.evaluate.after_training:
        from training.evaluate.crossfit import crossfit_report

        report = crossfit_report(
            best, records, oof, knn, fold_of, seconds=seconds, show_progress=show_progress
        )
    return {"best": best, "report": report, "seconds": seconds}
