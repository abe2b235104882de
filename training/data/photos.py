"""Model-input photos for export: decoded and resized exactly as serving will (:mod:`model.imaging`).

Parity takes held-out photos, INT8 calibration training photos; both come from a manifest (the
run's split manifest or one given) and use the checkpoint's input settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.imaging import ImageError, decode_image, resize_for_model
from training.data.manifest import ManifestError, load_manifest

if TYPE_CHECKING:
    from training.checkpoint import Checkpoint


class PhotoError(RuntimeError):
    """Photos that cannot be found or read; the message names the file or where it looked."""


@dataclass(frozen=True)
class ImageSet:
    """Model-input photos for parity, calibration or evaluation.

    Attributes:
        pixels: ``(N, H, W, 3)`` uint8, decoded and resized like serving does.
        labels: ``(N,)`` 1 = counterfeit, 0 = genuine; ``None`` when unlabelled.
        source: Where they came from, for the record (manifest and split, or ``generated``).
    """

    pixels: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.pixels)


@dataclass(frozen=True)
class ExportImages:
    """The photos an export uses.

    Attributes:
        evaluation: Held-out photos: parity, and with labels the INT8 AUC comparison.
        calibration: Training photos for INT8 calibration (``None``: not available).
    """

    evaluation: ImageSet
    calibration: ImageSet | None = None


def _stratified_sample(records: list[Any], limit: int, seed: int) -> list[Any]:
    """At most ``limit`` records, each label in proportion (at least one), classes mixed in order."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Any]] = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r)
    picked: list[Any] = []
    for label in sorted(by_label):
        group = by_label[label]
        share = max(1, round(limit * len(group) / len(records)))
        picked += [group[i] for i in sorted(rng.choice(len(group), min(share, len(group)), replace=False))]
    return [picked[i] for i in rng.permutation(len(picked))[:limit]]


def load_image_set(
    records: Sequence[Any], ckpt: Checkpoint, *, source: str, limit: int | None = None, seed: int = 0
) -> ImageSet:
    """Decode and resize manifest records exactly as serving will (:mod:`model.imaging`).

    Args:
        records: :class:`training.data.manifest.Record` rows.
        ckpt: Supplies input size, resize policy and JPEG draft size.
        source: Description kept with the set.
        limit: Keep at most this many, a class-stratified random sample (seeded).
        seed: Sampling seed.

    Raises:
        PhotoError: no records, or a photo that cannot be read (named).
    """
    chosen = list(records)
    if not chosen:
        raise PhotoError(f"No photos in {source}.")
    if limit is not None and len(chosen) > limit:
        chosen = _stratified_sample(chosen, limit, seed)
    size = (ckpt.input.image_size, ckpt.input.image_size)
    pixels = np.empty((len(chosen), *size, 3), dtype=np.uint8)
    for i, r in enumerate(chosen):
        try:
            decoded = decode_image(Path(r.file).read_bytes(), draft_size=ckpt.input.draft_size)
        except (OSError, ImageError) as exc:
            raise PhotoError(f"{r.file}: cannot be used for export ({exc}).") from None
        pixels[i] = resize_for_model(decoded, size, policy=ckpt.input.resize)[0]  # type: ignore[arg-type]
    labels = np.array([1 if r.label == "counterfeit" else 0 for r in chosen], dtype=np.int64)
    return ImageSet(pixels=pixels, labels=labels, source=source)


def generated_images(ckpt: Checkpoint, n: int = 8, seed: int = 0) -> ImageSet:
    """Textured stand-in photos (gradients + noise) for exports without any real photo at hand.

    Parity on these still proves the graph computes what torch computes, but the bundle records
    ``image_source="generated"``; the CLI always uses real photos.

    Args:
        ckpt: Supplies the input size.
        n: Number of photos.
        seed: Random seed.

    Returns:
        Unlabelled photos with ``source="generated"``.
    """
    rng = np.random.default_rng(seed)
    s = ckpt.input.image_size
    y, x = np.mgrid[0:s, 0:s].astype(np.float64)
    out = np.empty((n, s, s, 3), dtype=np.uint8)
    for i in range(n):
        a, b = rng.uniform(0.5, 3.0, 2)
        base = np.stack([x * 255 / s * a, y * 255 / s * b, (x * a + y * b) * 2], axis=-1) % 256
        out[i] = np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)
    return ImageSet(pixels=out, labels=None, source="generated")


def resolve_data_path(value: str, ckpt_path: Path | None) -> Path | None:
    """A data path recorded in a checkpoint: as given when absolute, else beside the checkpoint or in
    the working directory, whichever exists first; ``None`` when none does."""
    p = Path(value).expanduser()
    candidates = [p] if p.is_absolute() else [*([ckpt_path.parent / p] if ckpt_path else []), Path.cwd() / p]
    return next((c for c in candidates if c.exists()), None)


def images_from_manifest(
    path: Path,
    ckpt: Checkpoint,
    *,
    max_evaluation: int = 512,
    max_calibration: int = 128,
    seed: int = 0,
) -> ExportImages:
    """Evaluation photos from the held-out splits, calibration photos from the training split.

    A manifest without a ``split`` column (or with only one split) lends the same photos to both
    roles; the INT8 figures then say so in their source.

    Args:
        path: A manifest file or dataset folder.
        ckpt: Supplies the input settings.
        max_evaluation, max_calibration: Photos kept at most for each role.
        seed: Sampling seed.

    Raises:
        PhotoError: the manifest cannot be read or holds no photos.
    """
    try:
        records = load_manifest(path)
    except ManifestError as exc:
        raise PhotoError(f"Export photos: {exc}") from None
    held_out = [r for r in records if r.split in ("val", "test")]
    train = [r for r in records if r.split == "train"]
    if held_out and train:
        splits = "+".join(sorted({r.split for r in held_out}))  # type: ignore[type-var]
        evaluation = load_image_set(
            held_out, ckpt, source=f"{path} ({splits})", limit=max_evaluation, seed=seed
        )
        calibration = load_image_set(train, ckpt, source=f"{path} (train)", limit=max_calibration, seed=seed)
        return ExportImages(evaluation=evaluation, calibration=calibration)
    evaluation = load_image_set(records, ckpt, source=f"{path} (all rows)", limit=max_evaluation, seed=seed)
    calibration = load_image_set(
        records, ckpt, source=f"{path} (all rows, same as evaluation)", limit=max_calibration, seed=seed + 1
    )
    return ExportImages(evaluation=evaluation, calibration=calibration)


def images_for_checkpoint(
    ckpt: Checkpoint,
    ckpt_path: Path | None,
    images: Path | None = None,
    *,
    max_evaluation: int = 512,
    max_calibration: int = 128,
    seed: int = 0,
) -> ExportImages:
    """The photos for an export: ``images`` when given, else the run's split manifest.

    Args:
        ckpt: The checkpoint; its ``data`` record names the run's manifests.
        ckpt_path: The checkpoint file; relative manifest paths are looked for beside it.
        images: A manifest or dataset folder instead of the run's manifests.
        max_evaluation, max_calibration: Photos kept at most for each role.
        seed: Sampling seed.

    Raises:
        PhotoError: no photos can be found; the message names where it looked.
    """
    kwargs = {"max_evaluation": max_evaluation, "max_calibration": max_calibration, "seed": seed}
    if images is not None:
        if not Path(images).exists():
            raise PhotoError(f"--images {images}: no such file or folder.")
        return images_from_manifest(Path(images), ckpt, **kwargs)  # type: ignore[arg-type]
    tried = []
    for key in ("split_manifest", "manifest"):
        value = ckpt.data.get(key)
        if not value:
            continue
        found = resolve_data_path(str(value), ckpt_path)
        tried.append(f"data.{key}={value}")
        if found is not None:
            return images_from_manifest(found, ckpt, **kwargs)  # type: ignore[arg-type]
    where = "; ".join(tried) if tried else "the checkpoint names no manifest"
    raise PhotoError(
        f"No photos for the parity check ({where}, not found). Pass --images with a manifest or a "
        "genuine/ + counterfeit/ folder."
    )
