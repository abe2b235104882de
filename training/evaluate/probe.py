"""The linear-probe baseline: logistic regression on frozen ImageNet features, the report's ``probe``.

Fine-tuning has to beat it; the report and the model card show both side by side.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from model.network import AuthLensNet, NetworkSpec
from training.config import EvaluateConfig
from training.data.dataset import label_of, load_inputs
from training.evaluate.scores import score_metrics
from training.metrics import roc_auc
from training.train.inference import predict

PROBE_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
"""Inverse regularisation strengths tried on the validation split."""

PROBE_BACKBONE = "tf_efficientnet_lite0"
"""The frozen feature extractor: a backbone with offline ImageNet weights (see :mod:`model.network`)."""


def probe_features(
    records: Sequence, *, image_size: int, resize: str, draft_size: int, workers: int
) -> np.ndarray:
    """Frozen ImageNet EfficientNet-Lite0 embeddings (pooled last feature map), no augmentation."""
    net = AuthLensNet(NetworkSpec(backbone=PROBE_BACKBONE, pretrained="imagenet", drop_rate=0.0)).eval()
    net = net.to(memory_format=torch.channels_last)
    inputs = load_inputs(
        records, image_size=image_size, resize=resize, draft_size=draft_size, workers=workers
    )
    return predict(net, inputs, mean=net.mean, std=net.std, batch_size=64).embeddings  # (N, 1280)


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
        "features": f"{PROBE_BACKBONE} ImageNet (frozen), global average pool, 1280-d",
        "classifier": "StandardScaler + LogisticRegression(class_weight=balanced)",
        "C": best_c,
        "val_roc_auc_by_C": {str(c): v for c, v in val_auc.items()},
        "n_train": len(train),
        **score_metrics(y_eval, p, cfg.ece_bins),
        "seconds": time.perf_counter() - start,
    }
    return section, p
