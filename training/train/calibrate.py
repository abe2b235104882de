"""The end of training: calibrate ``best.pt`` on validation and give it its out-of-distribution reference.

The fitting itself lives in :mod:`training.train.calibration`; this step loads the best weights,
predicts the validation and (unaugmented) training photos once, fits the
:class:`model.bundle.Decision`, the blur floor and the OOD reference, records the validation
metrics, and saves ``best.pt`` again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.bundle import Decision
from model.decision import sigmoid
from model.imaging import sharpness
from model.logs import log_event
from training.checkpoint import OODReference, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data.dataset import flag_target
from training.metrics import flag_macro_f1, reliability, roc_auc
from training.train.calibration import (
    calibrated_probability,
    fit_calibration,
    fit_knn_ood,
    fit_min_sharpness,
    fit_ood,
    knn_scores,
    labelled_flags,
)
from training.train.inference import Outputs, load_inputs_for, predict_for
from training.train.loaders import RunData
from training.train.tracking import Tracker

log = logging.getLogger(__name__)


def validation_metrics(
    out: Outputs,
    labels: np.ndarray,
    flag_targets: np.ndarray,
    flag_mask: np.ndarray,
    decision: Decision,
    cfg: TrainConfig,
) -> dict[str, float]:
    """AUC, ECE before and after temperature scaling and flag macro-F1 of calibrated outputs.

    Args:
        out: Outputs for the ``N`` validation photos.
        labels: ``(N,)`` 1 = counterfeit.
        flag_targets: ``(N, F)`` 0/1; flag_mask: ``(N,)`` 1 where the photo has flag labels.
        decision: The fitted decision settings (temperature, flag thresholds).
        cfg: The run's configuration (``evaluate.ece_bins``).
    """
    p_val = calibrated_probability(out.logits, decision.temperature)
    return {
        "val_auc": roc_auc(labels, out.logits),
        "val_ece_uncalibrated": reliability(
            calibrated_probability(out.logits, 1.0), labels, cfg.evaluate.ece_bins
        ).ece,
        "val_ece": reliability(p_val, labels, cfg.evaluate.ece_bins).ece,
        "val_flag_macro_f1": flag_macro_f1(
            sigmoid(out.flag_logits), flag_targets, flag_mask, decision.flag_thresholds
        ),
        "temperature": decision.temperature,
    }


def fit_ood_reference(
    train_embeddings: np.ndarray, train_labels: np.ndarray, held_out: np.ndarray, cfg: TrainConfig
) -> OODReference:
    """The configured OOD reference of the training embeddings, thresholded on held-out ones."""
    c = cfg.calibration
    if c.ood_method == "mahalanobis":
        return fit_ood(train_embeddings, train_labels, c.ood_quantile, held_out=held_out)
    return fit_knn_ood(
        train_embeddings,
        knn_scores(train_embeddings, held_out, c.ood_k),
        k=c.ood_k,
        quantile=c.ood_quantile,
        max_reference=c.ood_max_reference,
    )


def calibrate_best(
    path: Path, cfg: TrainConfig, data: RunData, tracker: Tracker, *, step: int, extra: dict[str, Any]
) -> None:
    """Fit ``best.pt``'s decision settings and OOD reference, record its metrics, and save it again.

    Args:
        path: The run's ``best.pt``.
        cfg: The run's configuration (``calibration`` section, batch size, memory format).
        data: The run's splits, validation inputs and training labels.
        tracker: Receives the metrics as ``best_*`` at ``step``.
        step: The tracking step (epochs completed).
        extra: Run figures recorded after the validation metrics (throughput, config hash ...).
    """
    splits, val_labels = data.splits, data.val_labels
    log_event(
        log,
        "calibrating",
        stage=f"temperature and thresholds on {len(val_labels)} validation photos, "
        f"OOD reference on {len(splits.train)} training photos",
    )
    best = load_checkpoint(path)
    net = best.build_network()
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    val_out = predict_for(net, data.val_inputs, cfg)
    flag_t = np.stack([flag_target(r)[0] for r in splits.val])  # (N, F)
    flag_m = np.array([flag_target(r)[1] for r in splits.val])  # (N,)
    train_t = np.stack([flag_target(r)[0] for r in splits.train])
    train_m = np.array([flag_target(r)[1] for r in splits.train])
    decision = fit_calibration(
        val_out.logits,
        val_labels,
        sigmoid(val_out.flag_logits),
        flag_t,
        flag_m,
        cfg.calibration,
        trained=labelled_flags(train_t, train_m),
    )
    train_inputs = load_inputs_for(splits.train, cfg)  # (N_train, H, W, 3) uint8, no augmentation
    train_out = predict_for(net, train_inputs, cfg)
    if cfg.calibration.min_sharpness is None:
        sharp = np.array([sharpness(x) for x in train_inputs.numpy()])
        min_sharpness = fit_min_sharpness(sharp, cfg.calibration.sharpness_quantile)
        decision = decision.model_copy(update={"min_sharpness": min_sharpness})
    del train_inputs
    ood = fit_ood_reference(train_out.embeddings, data.train.labels, val_out.embeddings, cfg)
    metrics = validation_metrics(val_out, val_labels, flag_t, flag_m, decision, cfg)
    best.decision = decision
    best.ood = ood
    best.metrics = {"epoch": best.epoch, **metrics, **extra}
    save_checkpoint(path, best)
    tracker.log_metrics({f"best_{k}": v for k, v in best.metrics.items()}, step=step)
    log_event(
        log,
        "calibrated",
        temperature=round(decision.temperature, 4),
        counterfeit_threshold=round(decision.counterfeit_threshold, 4),
        genuine_threshold=round(decision.genuine_threshold, 4),
        ood_threshold=round(ood.threshold, 3),
        min_sharpness=round(decision.min_sharpness, 2),
    )
