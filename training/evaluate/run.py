"""Evaluate a checkpoint, and a linear-probe baseline on the same photos, into an honest report.

Usage: ``authlens evaluate --checkpoint runs/synthetic/best.pt [--split test] [--manifest M]``

Writes into the output folder (by default next to the checkpoint): ``report.json`` (everything,
with a flat ``summary`` the export copies into the bundle), ``report.md`` (the same for people),
``predictions.csv`` (one row per photo) and ``plots/`` (ROC, reliability diagram, confusion
matrix, worst errors with their maps).

Every figure is computed the way serving will see it: photos go through the serving decoder and
resize, verdicts through :mod:`model.decision` with the checkpoint's thresholds, OOD scores
through :class:`model.bundle.OODStats`. Each section of the report is one function
(:mod:`.scores`, :mod:`.localisation`, :mod:`.ood`, :mod:`.probe`); :func:`evaluate_checkpoint`
runs them in order and :mod:`.report` writes the files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.logs import log_event
from training.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from training.config import EvaluateConfig, TrainConfig
from training.data.dataset import DataError, load_with_geometry
from training.evaluate.localisation import localisation_section
from training.evaluate.ood import ood_check, ood_section
from training.evaluate.plots import PLOTS_DIR, plot_report, worst_errors
from training.evaluate.probe import linear_probe
from training.evaluate.report import (
    PREDICTIONS_CSV,
    REPORT_JSON,
    REPORT_MD,
    nan_to_none,
    summary_section,
    write_report,
)
from training.evaluate.scores import (
    Scored,
    breakdown,
    flags_section,
    inconclusive_reasons,
    item_metrics,
    metrics_section,
    operating_point,
    score_photos,
    tell_breakdown,
)
from training.train.runtime import tune_cpu

log = logging.getLogger(__name__)

SECTIONS: tuple[str, ...] = (
    "metrics", "operating_point", "inconclusive_reasons", "ood", "flags",
    "localisation", "breakdowns", "tells", "items", "probe",
)  # fmt: skip
"""The report's computed sections, in ``report.json`` order (after summary, evaluated, checkpoint, decision)."""


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


def _load_calibrated(path: Path) -> Checkpoint:
    """The checkpoint at ``path``, refused (naming what to evaluate instead) unless calibrated."""
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
    return ckpt


def _out_dir(path: Path, *, split: str, manifest: str | Path | None, out_dir: str | Path | None) -> Path:
    """The report folder: ``out_dir``, else the checkpoint's folder (test split) or ``eval-<name>`` beside it."""
    if out_dir is None:
        if manifest is None and split == "test":
            out_dir = path.parent
        else:
            out_dir = path.parent / f"eval-{split if manifest is None else Path(manifest).stem or 'manifest'}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _probe(
    ckpt: Checkpoint, run_records: Any, records: list, *, workers: int, cfg: EvaluateConfig
) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """:func:`linear_probe` on the run's train/val splits; ``(None, None)`` without them."""
    if run_records is None:
        log.warning("probe_skipped", extra={"fields": {"reason": "the run's split manifest is missing"}})
        return None, None
    return linear_probe(
        [r for r in run_records if r.split == "train"],
        [r for r in run_records if r.split == "val"],
        records,
        image_size=ckpt.input.image_size,
        resize=ckpt.input.resize,
        draft_size=ckpt.input.draft_size,
        workers=workers,
        cfg=cfg,
    )


def _checkpoint_section(path: Path, ckpt: Checkpoint) -> dict[str, Any]:
    return {
        "path": str(path),
        "epoch": ckpt.epoch,
        "backbone": ckpt.spec.backbone,
        "image_size": ckpt.input.image_size,
        "git_commit": ckpt.git_commit,
        "data": dict(ckpt.data),
        "validation": ckpt.metrics,
    }


def report_sections(ckpt: Checkpoint, records: list, scored: Scored, bins: int) -> dict[str, Any]:
    """The report sections computed from the scored photos alone (all but ``ood`` and ``probe``).

    Args:
        ckpt: Supplies the decision settings and the model input size.
        records: The evaluated records, in the order of ``scored``.
        scored: Their scores and verdicts (:func:`training.evaluate.scores.score_photos`).
        bins: Calibration (ECE) bins.

    Returns:
        ``{report.json key: section}`` for ``metrics``, ``operating_point``, ``inconclusive_reasons``,
        ``flags``, ``localisation``, ``breakdowns``, ``tells`` and ``items``.
    """
    assert ckpt.decision is not None
    labels, p, verdicts = scored.labels, scored.p, scored.verdicts
    reasons = [o.reasons for o in scored.outcomes]
    return {
        "metrics": metrics_section(scored, bins),
        "operating_point": operating_point(labels, verdicts),
        "inconclusive_reasons": inconclusive_reasons(scored.outcomes),
        "flags": flags_section(records, scored.flag_probs, ckpt.decision.flag_thresholds),
        "localisation": localisation_section(
            records, labels, scored.cams, scored.geometries, ckpt.input.image_size
        ),
        "breakdowns": breakdown(records, labels, p, verdicts),
        "tells": tell_breakdown(records, labels, p, verdicts),
        "items": item_metrics(records, labels, p, reasons, ckpt.decision, bins),
    }


def _settings(
    ckpt: Checkpoint, *, probe: bool | None, workers: int | None
) -> tuple[EvaluateConfig, bool, int]:
    """The run's evaluation settings, whether to fit the probe, and the loader workers (arguments win)."""
    cfg = TrainConfig.model_validate(ckpt.config) if ckpt.config else None
    ecfg = cfg.evaluate if cfg is not None else EvaluateConfig()
    n_workers = workers if workers is not None else (cfg.data.num_workers if cfg is not None else 0)
    return ecfg, ecfg.probe if probe is None else probe, n_workers


def _input_settings(ckpt: Checkpoint) -> dict[str, Any]:
    """How the checkpoint's photos become model input, as :func:`load_with_geometry` takes it."""
    return {
        "image_size": ckpt.input.image_size,
        "resize": ckpt.input.resize,
        "draft_size": ckpt.input.draft_size,
    }


def _assemble(
    path: Path,
    ckpt: Checkpoint,
    evaluated: dict[str, Any],
    scored: Scored,
    sections: dict[str, Any],
    *,
    plots: dict[str, str],
    out: Path,
    started: float,
) -> dict[str, Any]:
    """The report: summary, what was evaluated with what, the sections, plots, files and timing."""
    manifest = evaluated["manifest"]
    return {
        "summary": summary_section(evaluated["name"], scored.labels, sections),
        "evaluated": {**evaluated, "manifest": str(manifest) if manifest else None},
        "checkpoint": _checkpoint_section(path, ckpt),
        "decision": ckpt.decision.model_dump(mode="json"),  # type: ignore[union-attr]
        **{k: sections[k] for k in SECTIONS},
        "plots": plots,
        "files": {
            "folder": str(out),
            "report_json": str(out / REPORT_JSON),
            "report_md": str(out / REPORT_MD),
        },
        "timing": {
            "seconds": time.perf_counter() - started,
            # out-of-fold predictions come from the folds' runs: no forward pass timed here
            "inference_images_per_s": len(scored.labels) / scored.inference_s
            if scored.inference_s > 0
            else None,
            "threads": torch.get_num_threads(),
        },
    }


def _progress(started: float, show: bool) -> Callable[[str], None]:
    def status(msg: str) -> None:
        if show:
            log_event(log, "evaluate", stage=msg, seconds=round(time.perf_counter() - started, 1))

    return status


def _log_to_tracker(tracker: Any, out: Path, summary: dict[str, Any], epoch: int) -> None:
    tracker.log_metrics({f"test_{k}": v for k, v in summary.items()}, step=epoch)
    for name in (REPORT_JSON, REPORT_MD, PREDICTIONS_CSV):
        tracker.log_artifact(out / name, artifact_path="evaluation")
    tracker.log_artifact(out / PLOTS_DIR, artifact_path="evaluation/plots")


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
    ckpt = _load_calibrated(path)
    ecfg, do_probe, n_workers = _settings(ckpt, probe=probe, workers=workers)
    target, run_records = select_records(ckpt, split=split, manifest=manifest)
    out = _out_dir(path, split=split, manifest=manifest, out_dir=out_dir)
    net = ckpt.build_network().to(memory_format=torch.channels_last)
    records, status = target.records, _progress(started, show_progress)

    status(f"decoding {len(records)} photos")
    inputs, geometries = load_with_geometry(records, **_input_settings(ckpt), workers=n_workers)
    status("scoring")
    scored = score_photos(net, ckpt, records, inputs, geometries)
    probe_section, p_probe = None, None
    if do_probe:
        if run_records is not None:
            status("linear probe: extracting frozen ImageNet features")
        probe_section, p_probe = _probe(ckpt, run_records, records, workers=n_workers, cfg=ecfg)
    status("out-of-distribution check")
    ood_checks = ood_check(net, ckpt, manifest=ood_manifest, workers=n_workers)
    status("plots")
    worst = worst_errors(records, scored, ecfg.worst_errors)
    plots = plot_report(out / PLOTS_DIR, scored, p_probe, worst, ecfg.ece_bins)

    sections = {
        **report_sections(ckpt, records, scored, ecfg.ece_bins),
        "ood": ood_section(ckpt, scored.ood_scores, ood_checks),
        "probe": probe_section,
    }
    evaluated = {"name": target.name, "split": None if manifest else split, "manifest": manifest}
    report = _assemble(path, ckpt, evaluated, scored, sections, plots=plots, out=out, started=started)
    summary = report["summary"]  # before nan_to_none: the tracker gets floats, nan included
    report = nan_to_none(report)
    write_report(out, report, records, scored, p_probe)
    if tracker is not None:
        _log_to_tracker(tracker, out, summary, ckpt.epoch)
    status("done")
    return report
