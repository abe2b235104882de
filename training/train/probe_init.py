"""LP-FT: start fine-tuning from the linear probe's head (Kumar et al., 2022).

A randomly initialised head sends large, noisy gradients into the pretrained features during
the first steps, and on a small set the features bend to fit the noise. Fitting the head first,
as logistic regression on the frozen pooled features of the (unaugmented) training photos, gives
fine-tuning a head that already separates the classes as well as the frozen features allow.

The heads are 1x1 convolutions applied to every cell of the feature map and then pooled; with
``mean`` pooling the photo's logit is exactly ``w . mean_xy(F) + b``, the probe's; with ``lse``
pooling it starts slightly above it (a smooth maximum of the same cells).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from model.logs import log_event
from model.network import AuthLensNet
from training.config import TrainConfig
from training.data.dataset import flag_target, label_of
from training.data.manifest import Record
from training.metrics import roc_auc
from training.train.inference import load_inputs_for, predict_for

log = logging.getLogger(__name__)


def fit_linear(x: np.ndarray, y: np.ndarray, *, c: float, balanced: bool) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised ``x``, returned as weights on the raw features.

    Args:
        x: ``(N, D)`` features.
        y: ``(N,)`` 0/1 labels, both present.
        c: Inverse L2 strength (on standardised features).
        balanced: Weight the classes equally (as the class-balanced training loss does).

    Returns:
        ``(w (D,), b)`` with ``w . x + b`` equal to the fitted log-odds.
    """
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, class_weight="balanced" if balanced else None, max_iter=5000)
    model.fit(scaler.transform(x), y)
    w = model.coef_[0] / scaler.scale_
    return w, float(model.intercept_[0] - np.dot(w, scaler.mean_))


def _set_head(head: torch.nn.Linear, row: int, w: np.ndarray, b: float) -> None:
    with torch.no_grad():
        head.weight[row] = torch.from_numpy(w.astype(np.float32))
        head.bias[row] = float(b)


def init_heads_from_probe(net: AuthLensNet, records: Sequence[Record], cfg: TrainConfig) -> dict[str, float]:
    """Set the authenticity head (and each flag head with labelled positives) from linear probes.

    Args:
        net: The freshly built network (pretrained backbone, random heads); changed in place.
        records: The training photos.
        cfg: The run's configuration (``train.linear_probe_c``, ``train.class_balance``, input size).

    Returns:
        ``{"probe_train_auc": ..., "probe_flags": n}``, also logged as ``linear_probe_init``.
    """
    out = predict_for(net, load_inputs_for(records, cfg), cfg)  # embeddings: pooled features, eval mode
    x = out.embeddings.astype(np.float64)
    y = np.array([label_of(r) for r in records])
    w, b = fit_linear(x, y, c=cfg.train.linear_probe_c, balanced=cfg.train.class_balance)
    _set_head(net.auth_head, 0, w, b)
    targets = np.stack([flag_target(r)[0] for r in records])  # (N, F)
    labelled = np.array([flag_target(r)[1] for r in records]) > 0.5
    fitted = 0
    for j in range(targets.shape[1]):
        t = targets[labelled, j]
        if 0 < t.sum() < len(t):
            fw, fb = fit_linear(x[labelled], t, c=cfg.train.linear_probe_c, balanced=False)
            _set_head(net.flag_head, j, fw, fb)
            fitted += 1
    figures = {"probe_train_auc": roc_auc(y, x @ w + b), "probe_flags": fitted}
    log_event(log, "linear_probe_init", photos=len(records), **figures)
    return figures
