"""Training augmentation for product photos (albumentations), ending in the serving resize.

What varies between an investigator's photos and a seller's listing is the camera, not the
item: framing, viewpoint, light, focus, sensor noise and JPEG re-compression. Those are what we
simulate. What we deliberately leave alone:

* **Hue and saturation.** Colour is itself a tell (``color_shift``: leather or canvas off the
  reference shade), so hue/saturation jitter, channel shuffles, grey-scale and per-channel gains
  are excluded: they would teach the model that a shifted colour is normal. Brightness, contrast
  and gamma are applied equally to the three channels, which keeps hue (up to clipping).
* **Crops that cut tells off.** The random crop never cuts into a labelled box (tells, product),
  so a counterfeit keeps the evidence its label rests on.
* **Mirroring** is off by default: mirrored lettering (logos, serial codes) is itself a sign of a
  fake. Turn ``augment.hflip`` on for data without text tells (e.g. shoes seen from either side).

Blur and down-scaling are kept mild and rare because ``print_quality`` tells are blur.
The last step is :func:`model.imaging.resize_for_model`, the exact function evaluation, export
calibration and serving use, so training never sees a resize serving does not do.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from model.imaging import ResizePolicy, resize_for_model
from training.config import AugmentConfig


def box_safe_crop(
    pixels: np.ndarray, boxes: np.ndarray, *, max_cut: float, rng: np.random.Generator
) -> np.ndarray:
    """Cut up to ``max_cut`` of each side from each border, never into the union of ``boxes``.

    Args:
        pixels: ``(H, W, 3)`` image.
        boxes: ``(K, 4)`` boxes ``(x0, y0, x1, y1)`` in these pixels' coordinates; may be empty.
        max_cut: Largest share of the width/height removed at each border.
        rng: Source of the four cut sizes.
    """
    h, w = pixels.shape[:2]
    if max_cut <= 0:
        return pixels
    left, top, right, bottom = _cuts(pixels.shape[:2], boxes, max_cut=max_cut, rng=rng)
    return pixels[top : h - bottom, left : w - right]


def _cuts(
    shape: tuple[int, ...], boxes: np.ndarray, *, max_cut: float, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` pixels cut by :func:`box_safe_crop`."""
    h, w = shape[:2]
    limit_l = limit_r = max_cut * w
    limit_t = limit_b = max_cut * h
    if len(boxes):
        x0, y0 = float(boxes[:, 0].min()), float(boxes[:, 1].min())
        x1, y1 = float(boxes[:, 2].max()), float(boxes[:, 3].max())
        limit_l, limit_t = min(limit_l, max(x0, 0.0)), min(limit_t, max(y0, 0.0))
        limit_r, limit_b = min(limit_r, max(w - x1, 0.0)), min(limit_b, max(h - y1, 0.0))
    cuts = rng.uniform(0.0, 1.0, size=4) * np.array([limit_l, limit_t, limit_r, limit_b])
    left, top, right, bottom = (int(c) for c in cuts)
    return left, top, right, bottom


class Augmenter:
    """Random crop, camera-like albumentations pipeline, then the serving resize.

    Deterministic per call: the same ``seed`` gives the same output (used to key augmentation to
    ``(run seed, epoch, index)``).
    """

    def __init__(self, cfg: AugmentConfig, *, image_size: int, resize: ResizePolicy) -> None:
        if cfg.train_crop is not None and cfg.train_crop > image_size:
            raise ValueError(f"augment.train_crop {cfg.train_crop} exceeds data.image_size {image_size}.")
        self.cfg = cfg
        self.size = (image_size, image_size)
        self.resize = resize
        reflect = cv2.BORDER_REFLECT_101  # no black corners: serving never sees them
        steps: list[A.BasicTransform | A.BaseCompose] = []
        if cfg.rotate > 0:
            steps.append(
                A.Affine(rotate=(-cfg.rotate, cfg.rotate), scale=(0.92, 1.05), border_mode=reflect, p=0.7)
            )
        if cfg.perspective > 0:
            steps.append(A.Perspective(scale=(0.0, cfg.perspective), border_mode=reflect, p=0.5))
        if cfg.hflip:
            steps.append(A.HorizontalFlip(p=0.5))
        if cfg.brightness > 0 or cfg.contrast > 0:
            steps.append(
                A.RandomBrightnessContrast(
                    brightness_limit=cfg.brightness, contrast_limit=cfg.contrast, p=0.8
                )
            )
        if cfg.gamma > 0:
            steps.append(A.RandomGamma(gamma_limit=(100 * (1 - cfg.gamma), 100 * (1 + cfg.gamma)), p=0.5))
        if cfg.blur_p > 0:
            steps.append(
                A.OneOf(
                    [
                        A.GaussianBlur(sigma_limit=(0.3, 1.2), p=1.0),
                        A.MotionBlur(blur_limit=(3, 5), p=1.0),
                        A.Downscale(scale_range=(0.6, 0.9), p=1.0),
                    ],
                    p=cfg.blur_p,
                )
            )
        if cfg.noise_p > 0:
            # one noise field for all channels: zero-mean and hue-neutral
            steps.append(A.GaussNoise(std_range=(0.01, 0.05), per_channel=False, p=cfg.noise_p))
        if cfg.jpeg_p > 0:
            # before the resize, as a camera or a marketplace re-encodes at photo resolution
            steps.append(A.ImageCompression(quality_range=(cfg.jpeg_quality_min, 95), p=cfg.jpeg_p))
        # Boxes follow every geometric step (their corners, re-enclosed), so the tells' boxes stay
        # usable as dense targets for the maps (training.train.losses.dense_targets).
        self.moves_boxes = cfg.rotate > 0 or cfg.perspective > 0 or cfg.hflip
        bbox_params = (
            A.BboxParams(format="pascal_voc", label_fields=["box_ids"], clip=True)
            if self.moves_boxes
            else None
        )
        self.pipeline = A.Compose(steps, bbox_params=bbox_params) if cfg.enabled else None

    def _seed(self, seed: int) -> None:
        assert self.pipeline is not None
        self.pipeline.set_random_seed(seed)
        # distinct streams per step, so e.g. brightness and noise strength are not correlated
        for i, step in enumerate(self.pipeline.transforms):
            step.set_random_seed(seed + 7919 * (i + 1))

    def __call__(self, pixels: np.ndarray, boxes: np.ndarray, *, seed: int) -> np.ndarray:
        """Augment ``(H, W, 3)`` uint8 pixels and resize them to the model input.

        Args:
            pixels: Decoded photo.
            boxes: ``(K, 4)`` labelled boxes in ``pixels`` coordinates (kept inside the crop).
            seed: Makes the result reproducible.

        Returns:
            ``(size, size, 3)`` uint8 model input.
        """
        return self.apply(pixels, boxes, seed=seed)[0]

    def apply(
        self, pixels: np.ndarray, boxes: np.ndarray, *, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`__call__`, and also return where ``boxes`` went, in model-input pixels.

        Returns:
            ``(pixels, moved, ids)``: the model input; ``(N, 4)`` boxes in its coordinates; and
            ``(N,)`` the index of the input box each one comes from. A box can appear more than
            once (the reflected border repeats what is near the edge, tells included) or not at
            all (pushed out of the frame: its evidence may be gone).
        """
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        ids = np.arange(len(boxes))
        if self.pipeline is not None:
            rng = np.random.default_rng(seed)
            if self.cfg.crop > 0:
                left, top, right, bottom = _cuts(pixels.shape, boxes, max_cut=self.cfg.crop, rng=rng)
                h, w = pixels.shape[:2]
                pixels = pixels[top : h - bottom, left : w - right]
                boxes = boxes - np.array([left, top, left, top], np.float32)
            h, w = pixels.shape[:2]
            boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
            valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            self._seed(seed % (2**31))
            if self.moves_boxes:
                out = self.pipeline(
                    image=np.ascontiguousarray(pixels), bboxes=boxes[valid], box_ids=ids[valid]
                )
                boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
                ids = np.asarray(out["box_ids"], np.int64).reshape(-1)
            else:
                out = self.pipeline(image=np.ascontiguousarray(pixels))
                boxes, ids = boxes[valid], ids[valid]
            pixels = out["image"]
        result, geometry = resize_for_model(pixels, self.size, policy=self.resize)
        # model pixel = original / scale + pad (Geometry maps the other way)
        scale = np.array([geometry.scale_x, geometry.scale_y] * 2, np.float32)
        pad = np.array([geometry.pad_x, geometry.pad_y] * 2, np.float32)
        boxes = boxes / scale + pad
        if self.cfg.train_crop is not None and self.pipeline is not None:
            result, boxes, kept = self._train_crop(result, boxes, np.random.default_rng([seed, 1]))
            ids = ids[kept]
        return result, boxes, ids

    def _train_crop(
        self, pixels: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A ``train_crop`` square of the model input, holding every labelled box where they fit.

        Returns:
            The crop, the boxes shifted into it and clipped, and which boxes still have an area
            (a box cut off is dropped: its evidence is gone, as in any close-up). A crop that
            cannot hold all boxes is placed around their centre.
        """
        side = int(self.cfg.train_crop or 0)
        h, w = pixels.shape[:2]
        room = np.array([w - side, h - side], np.float64)  # (x, y) range of the crop's corner
        lo, hi = np.zeros(2), room
        if len(boxes):
            x0, y0 = float(boxes[:, 0].min()), float(boxes[:, 1].min())
            x1, y1 = float(boxes[:, 2].max()), float(boxes[:, 3].max())
            want_lo, want_hi = np.array([x1 - side, y1 - side]), np.array([x0, y0])
            centre = np.array([(x0 + x1 - side) / 2, (y0 + y1 - side) / 2])
            fits = want_lo <= want_hi
            lo = np.clip(np.where(fits, want_lo, centre - side / 4), 0, room)
            hi = np.clip(np.where(fits, want_hi, centre + side / 4), 0, room)
        cx, cy = (round(float(v)) for v in rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi)))
        crop = pixels[cy : cy + side, cx : cx + side]
        moved = np.clip(boxes - np.array([cx, cy, cx, cy], np.float32), 0, side).astype(np.float32)
        kept = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
        return np.ascontiguousarray(crop), moved[kept], kept
