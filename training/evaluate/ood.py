"""The out-of-distribution check: the report's ``ood`` section.

How many evaluated photos the checkpoint's OOD reference calls foreign, and how many photos it
*should* call foreign are: scikit-image's sample photos (not products) and, on request, another
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
from training.train.inference import predict

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


def ood_check(
    net: AuthLensNet, ckpt: Checkpoint, *, manifest: str | Path | None, workers: int
) -> dict[str, Any] | None:
    """Share of photos the model should not know (not products; another manifest) flagged as OOD."""
    size = (ckpt.input.image_size, ckpt.input.image_size)
    assert ckpt.ood is not None
    threshold = ckpt.ood.threshold
    section: dict[str, Any] = {}
    samples = foreign_photos()
    if samples:
        inputs = torch.from_numpy(
            np.stack([resize_for_model(px, size, policy=ckpt.input.resize)[0] for _, px in samples])  # type: ignore[arg-type]
        )
        scores = _ood_scores(net, ckpt, inputs)
        section["non_product_photos"] = {
            **_flagged("scikit-image sample photos", scores, threshold),
            "not_flagged": [name for (name, _), s in zip(samples, scores, strict=True) if s <= threshold],
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
        section["other_manifest"] = _flagged(str(manifest), _ood_scores(net, ckpt, inputs), threshold)
    return section or None


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
