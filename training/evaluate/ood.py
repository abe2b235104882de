"""The out-of-distribution check: the report's ``ood`` section.

How many evaluated photos the checkpoint's OOD reference calls foreign, and how many photos it
*should* call foreign are: the generated foreign-photo corpus (:mod:`training.evaluate.foreign`:
photos, textures, screenshots, blank and noise frames, synthetic goods) and, on request, another
manifest (e.g. another category).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.imaging import resize_for_model
from model.network import AuthLensNet
from training.checkpoint import Checkpoint
from training.data.dataset import load_with_geometry
from training.evaluate.foreign import foreign_corpus
from training.train.inference import predict


def _ood_scores(net: AuthLensNet, ckpt: Checkpoint, inputs: torch.Tensor) -> np.ndarray:
    """``(N,)`` OOD scores of ``(N, H, W, 3)`` uint8 inputs against the checkpoint's reference."""
    assert ckpt.ood is not None
    return ckpt.ood.stats.score(predict(net, inputs, mean=net.mean, std=net.std).embeddings)


def _flagged(source: str, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    return {
        "source": source,
        "n": len(scores),
        "flagged_rate": float(np.mean(scores > threshold)),
        "score_median": float(np.median(scores)),
    }


def foreign_section(net: AuthLensNet, ckpt: Checkpoint, *, synthetic_goods: bool) -> dict[str, Any]:
    """How much of the foreign-photo corpus (:mod:`training.evaluate.foreign`) is called foreign."""
    assert ckpt.ood is not None
    size = (ckpt.input.image_size, ckpt.input.image_size)
    rows = foreign_corpus(synthetic_goods=synthetic_goods)
    inputs = torch.from_numpy(
        np.stack([resize_for_model(px, size, policy=ckpt.input.resize)[0] for _, _, px in rows])  # type: ignore[arg-type]
    )
    scores = _ood_scores(net, ckpt, inputs)
    flagged = scores > ckpt.ood.threshold
    cats = np.array([c for c, _, _ in rows])
    return {
        **_flagged(
            "generated foreign-photo corpus (training/evaluate/foreign.py)", scores, ckpt.ood.threshold
        ),
        "by_category": {
            c: {"n": int((cats == c).sum()), "flagged_rate": float(flagged[cats == c].mean())}
            for c in dict.fromkeys(cats.tolist())
        },
        "not_flagged": [f"{c}:{n}" for (c, n, _), f in zip(rows, flagged, strict=True) if not f],
    }


def ood_check(
    net: AuthLensNet, ckpt: Checkpoint, *, manifest: str | Path | None, workers: int
) -> dict[str, Any] | None:
    """Share of photos the model should not know (the foreign corpus; another manifest) called foreign.

    The corpus leaves out the synthetic goods when the model was trained on synthetic data.
    """
    from training.data.synth import is_synthetic

    assert ckpt.ood is not None
    trained_on = ckpt.data.get("manifest")
    section: dict[str, Any] = {
        "non_product_photos": foreign_section(
            net, ckpt, synthetic_goods=not (trained_on and is_synthetic(trained_on))
        )
    }
    if manifest is not None:
        from training.data.manifest import load_manifest

        records = load_manifest(manifest)
        inputs, _ = load_with_geometry(
            records,
            image_size=ckpt.input.image_size,
            resize=ckpt.input.resize,
            draft_size=ckpt.input.draft_size,
            workers=workers,
        )
        section["other_manifest"] = _flagged(
            str(manifest), _ood_scores(net, ckpt, inputs), ckpt.ood.threshold
        )
    return section


def ood_section(ckpt: Checkpoint, ood_scores: np.ndarray, checks: dict[str, Any] | None) -> dict[str, Any]:
    """The report's ``ood``: the reference's threshold, the evaluated photos' rate, and :func:`ood_check`'s."""
    assert ckpt.ood is not None
    return {
        "threshold": ckpt.ood.threshold,
        "quantile": ckpt.ood.quantile,
        "rate": float(np.mean(ood_scores > ckpt.ood.threshold)),
        "score_median": float(np.median(ood_scores)),
        "checks": checks,
    }
