"""Builders for tiny models, checkpoints, bundles and images, made at test time."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from model.bundle import Decision
from model.flags import FLAG_NAMES


def decision(**overrides: object) -> Decision:
    """Thresholds for verdict tests: counterfeit at 0.8, genuine at 0.3, every flag at 0.5."""
    fields: dict[str, object] = {
        "temperature": 1.0,
        "counterfeit_threshold": 0.8,
        "genuine_threshold": 0.3,
        "max_false_accusation_rate": 0.01,
        "max_miss_rate": 0.05,
        "flag_thresholds": {f: 0.5 for f in FLAG_NAMES},
        "min_image_side": 128,
        "min_sharpness": 10.0,
    }
    return Decision.model_validate(fields | overrides)


def jpeg_bytes(
    width: int = 320,
    height: int = 240,
    *,
    seed: int = 0,
    quality: int = 90,
    exif_orientation: int | None = None,
) -> bytes:
    """A textured RGB JPEG (smooth gradient plus noise), optionally with an EXIF orientation tag."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 256], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def tiny_checkpoint(
    image_size: int = 64, seed: int = 0, *, flags: Sequence[str] = FLAG_NAMES, freeze: Sequence[str] = ()
):
    """A randomly initialised efficientnet_lite0 checkpoint with a plausible calibration.

    Args:
        image_size: Input side in pixels.
        seed: Seeds the weights and the OOD reference.
        flags: The trained flags: those the decision has thresholds for (``()``: trained
            without flag labels). The network keeps its whole flag head either way.
        freeze: Backbone parts kept frozen (e.g. those of ``configs/sneakers.yaml``).
    """
    import torch

    from model.network import AuthLensNet, NetworkSpec
    from model.ood import KnnOOD, l2_normalise
    from training.checkpoint import Checkpoint, InputSettings, OODReference

    torch.manual_seed(seed)
    spec = NetworkSpec(backbone="efficientnet_lite0", pretrained="none", drop_rate=0.0, freeze=tuple(freeze))
    net = AuthLensNet(spec).eval()
    dim = net.embedding_dim
    return Checkpoint(
        spec=spec,
        state_dict=net.state_dict(),
        config={},
        input=InputSettings(
            image_size=image_size, resize="stretch", draft_size=image_size * 2, mean=net.mean, std=net.std
        ),
        decision=decision(
            temperature=1.3,
            counterfeit_threshold=0.6,
            genuine_threshold=0.4,
            min_image_side=32,
            min_sharpness=0.0,
            flag_thresholds={f: 0.5 for f in flags},
        ),
        ood=OODReference(
            stats=KnnOOD(reference=l2_normalise(np.random.default_rng(seed).normal(size=(16, dim))), k=2),
            threshold=1e9,
            quantile=0.99,
        ),
        data={"manifest_hash": "0" * 64, "n_train": 0},
        metrics={},
        epoch=0,
        git_commit="test",
    )


def tiny_bundle(out_dir: Path, image_size: int = 64, *, flags: Sequence[str] = FLAG_NAMES):
    """Export :func:`tiny_checkpoint` (trained ``flags``) into ``out_dir``; returns the verified bundle."""
    from training.export.bundle import export_bundle

    ckpt = tiny_checkpoint(image_size, flags=flags)
    return export_bundle(ckpt, out_dir, name="tiny", version="test")
