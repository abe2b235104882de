"""Scoring the evaluated photos as serving would, and the report sections computed from the scores.

:func:`score_photos` runs the network once; every section below is a function of its
:class:`Scored` (or of plain arrays) returning its part of ``report.json``: ``metrics``,
``operating_point``, ``inconclusive_reasons``, ``flags``, ``breakdowns``, ``tells`` and ``items``.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from model.bundle import Decision
from model.decision import Outcome, judge_image, judge_item, sigmoid, usability_reasons
from model.flags import FLAG_NAMES
from model.imaging import Geometry, sharpness
from model.network import AuthLensNet
from training.checkpoint import Checkpoint
from training.data.dataset import flag_target, label_of
from training.metrics import (
    ece_noise_floor,
    flag_f1,
    flag_macro_f1,
    pr_auc,
    recall_at_far,
    reliability,
    roc_auc,
)
from training.train.calibration import calibrated_probability
from training.train.inference import Outputs, predict

FARS: tuple[float, ...] = (0.01, 0.05)
"""False-accusation rates at which counterfeit recall is reported (``recall_at_far_1pct`` ...)."""

SUBTLETY_BINS = ((0.0, 1 / 3, "obvious"), (1 / 3, 2 / 3, "medium"), (2 / 3, 1.0001, "subtle"))


@dataclass
class Scored:
    """The evaluated photos as serving sees them, every array in record order."""

    labels: np.ndarray  # (N,) 1 counterfeit, 0 genuine
    inputs: torch.Tensor  # (N, H, W, 3) uint8 model inputs
    geometries: list[Geometry]  # N, model input -> original photo
    outputs: Outputs  # network outputs, cams (N, h, w) included
    p_uncal: np.ndarray  # (N,) counterfeit probability before temperature scaling
    p: np.ndarray  # (N,) calibrated counterfeit probability
    flag_probs: np.ndarray  # (N, F)
    ood_scores: np.ndarray  # (N,)
    outcomes: list[Outcome]  # serving's verdict and reasons per photo
    inference_s: float  # seconds of the forward passes

    @property
    def verdicts(self) -> list[str]:
        """Serving's verdict per photo: ``genuine``, ``counterfeit`` or ``inconclusive``."""
        return [o.verdict for o in self.outcomes]

    @property
    def cams(self) -> np.ndarray:
        """``(N, h, w)`` counterfeit-evidence maps."""
        assert self.outputs.cams is not None  # score_photos asks for them
        return self.outputs.cams


def score_photos(
    net: AuthLensNet, ckpt: Checkpoint, records: Sequence, inputs: torch.Tensor, geometries: list[Geometry]
) -> Scored:
    """Run ``net`` over ``inputs`` and judge each photo with the checkpoint's decision settings.

    Args:
        net: The checkpoint's network.
        ckpt: A calibrated checkpoint (``decision`` and ``ood`` set).
        records: The evaluated records (labels).
        inputs: ``(N, H, W, 3)`` uint8 model inputs of ``records``.
        geometries: Their geometries (original sizes for the usability checks).
    """
    assert ckpt.decision is not None and ckpt.ood is not None  # evaluate_checkpoint refuses others
    t0 = time.perf_counter()
    outputs = predict(net, inputs, mean=net.mean, std=net.std, batch_size=64, with_cams=True)
    inference_s = time.perf_counter() - t0
    ood_scores = ckpt.ood.stats.score(outputs.embeddings)
    return judge_outputs(
        outputs, ckpt.decision, ood_scores, ckpt.ood.threshold, records, inputs, geometries, inference_s
    )


def judge_outputs(
    outputs: Outputs,
    decision: Decision,
    ood_scores: np.ndarray,
    ood_threshold: float,
    records: Sequence,
    inputs: torch.Tensor,
    geometries: list[Geometry],
    inference_s: float = 0.0,
) -> Scored:
    """Judge each photo from network outputs already computed (e.g. out-of-fold predictions).

    Args:
        outputs: ``N`` photos' outputs, cams included.
        decision: The decision settings to apply.
        ood_scores: ``(N,)`` OOD scores of the photos.
        ood_threshold: Scores above it are out of distribution.
        records: The photos (labels).
        inputs: ``(N, H, W, 3)`` uint8 model inputs (sharpness).
        geometries: Their geometries (original sizes).
        inference_s: Seconds the outputs took, for the report's timing.
    """
    p = calibrated_probability(outputs.logits, decision.temperature)
    outcomes = []
    for i, g in enumerate(geometries):
        reasons = usability_reasons(
            min_side=min(g.original_size),
            sharpness=float(sharpness(inputs[i].numpy())),
            ood_score=float(ood_scores[i]),
            decision=decision,
            ood_threshold=ood_threshold,
        )
        outcomes.append(judge_image(float(p[i]), reasons, decision))
    return Scored(
        labels=np.array([label_of(r) for r in records]),
        inputs=inputs,
        geometries=geometries,
        outputs=outputs,
        p_uncal=calibrated_probability(outputs.logits, 1.0),
        p=p,
        flag_probs=sigmoid(outputs.flag_logits),
        ood_scores=ood_scores,
        outcomes=outcomes,
        inference_s=inference_s,
    )


# ----------------------------------------------------------------------------- sections


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


def metrics_section(scored: Scored, bins: int) -> dict[str, float]:
    """The report's ``metrics``: :func:`score_metrics` of the calibrated probability, and the ECE before."""
    return {
        **score_metrics(scored.labels, scored.p, bins),
        "ece_uncalibrated": reliability(scored.p_uncal, scored.labels, bins).ece,
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


def inconclusive_reasons(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How often each reason made a photo inconclusive (a photo may have several)."""
    return dict(Counter(r for o in outcomes for r in o.reasons))


def flags_section(records: Sequence, flag_probs: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """Per-flag F1 at the decision's flag thresholds, on the photos that have flag labels."""
    flag_t = np.stack([flag_target(r)[0] for r in records])  # (N, F)
    flag_m = np.array([flag_target(r)[1] for r in records])  # (N,) 1.0 when labelled
    return {
        "labelled_photos": int(flag_m.sum()),
        "macro_f1": flag_macro_f1(flag_probs, flag_t, flag_m, thresholds),
        "f1": flag_f1(flag_probs, flag_t, flag_m, thresholds),
        "positives": {n: int(flag_t[flag_m > 0.5, j].sum()) for j, n in enumerate(FLAG_NAMES)},
        "thresholds": dict(thresholds),
    }


def breakdown(records: Sequence, labels: np.ndarray, p: np.ndarray, verdicts: Sequence[str]) -> dict:
    """Metrics per brand, per category and per (sneaker) model, where the manifest says."""
    keys: dict[str, Callable[[Any], str | None]] = {
        "brand": lambda r: r.brand,
        "category": lambda r: r.category,
        "model": lambda r: r.extra.get("model") or None,
        "source": lambda r: r.extra.get("source") or None,  # "review": confirmed in the review queue
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
