"""Training augmentation: reproducible, ends at the model size, keeps tells and colour."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from model.imaging import resize_for_model
from training.config import AugmentConfig
from training.data.augment import Augmenter, box_safe_crop


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), (150, 110, 60), dtype=np.float64)  # tan leather
    img += rng.normal(0, 8, img.shape)
    img[100:140, 140:200] = (30, 30, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_same_seed_same_pixels_other_seed_other_pixels(photo: np.ndarray) -> None:
    aug = Augmenter(AugmentConfig(), image_size=64, resize="stretch")
    boxes = np.zeros((0, 4), np.float32)
    a, b = aug(photo, boxes, seed=7), aug(photo, boxes, seed=7)
    c = aug(photo, boxes, seed=8)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_disabled_augmentation_is_exactly_the_serving_resize(photo: np.ndarray) -> None:
    for policy in ("stretch", "letterbox"):
        aug = Augmenter(AugmentConfig(enabled=False), image_size=96, resize=policy)
        expected, _ = resize_for_model(photo, (96, 96), policy=policy)
        assert np.array_equal(aug(photo, np.zeros((0, 4)), seed=1), expected)


def test_letterbox_policy_is_kept_after_augmentation(photo: np.ndarray) -> None:
    aug = Augmenter(AugmentConfig(crop=0.0, rotate=0, perspective=0), image_size=64, resize="letterbox")
    out = aug(photo, np.zeros((0, 4)), seed=3)
    assert np.all(out[:4] == 127) and np.all(out[-4:] == 127)  # 4:3 photo: grey bars top and bottom


def test_crop_never_cuts_into_a_box() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((100, 200, 3), np.uint8)
    img[10:30, 150:190] = 255  # a tell near the top right corner
    boxes = np.array([[150, 10, 190, 30]], np.float32)
    for _ in range(200):
        out = box_safe_crop(img, boxes, max_cut=0.4, rng=rng)
        assert (out == 255).all(axis=2).sum() == 20 * 40
        assert out.shape[0] >= 100 - 10 - 40 and out.shape[1] >= 200 - 80 - 10  # cuts capped by the box


def _mean_hue(img: np.ndarray) -> float:
    r, g, b = img.reshape(-1, 3).mean(0) / 255
    return colorsys.rgb_to_hsv(r, g, b)[0]


def test_colour_is_not_augmented_away(photo: np.ndarray) -> None:
    """Hue is a tell (color_shift): the pipeline moves brightness, never the hue."""
    aug = Augmenter(AugmentConfig(), image_size=64, resize="stretch")
    ref = _mean_hue(photo)
    hues = [_mean_hue(aug(photo, np.zeros((0, 4)), seed=s)) for s in range(40)]
    assert max(abs(h - ref) for h in hues) < 0.02  # hue in [0, 1): 0.02 = 7 degrees


def test_boxes_follow_the_pixels_through_every_geometric_step() -> None:
    img = np.full((300, 400, 3), 40, np.uint8)
    img[100:140, 200:260] = 255  # a bright tell
    boxes = np.array([[200, 100, 260, 140], [10, 10, 390, 290]], np.float32)
    aug = Augmenter(AugmentConfig(rotate=20, perspective=0.1), image_size=224, resize="stretch")
    followed = 0
    for seed in range(30):
        out, moved, ids = aug.apply(img, boxes, seed=seed)
        tell = moved[ids == 0]
        assert len(tell) >= 1  # the crop keeps boxes inside; reflections may add copies
        ys, xs = np.nonzero(out.min(axis=2) > 200)
        x0, y0, x1, y1 = tell[0]
        inside = (xs >= x0 - 2) & (xs <= x1 + 2) & (ys >= y0 - 2) & (ys <= y1 + 2)
        # the main copy of the bright patch lies in the first box of its id
        assert inside.sum() >= 0.9 * min(len(xs), (x1 - x0) * (y1 - y0) * 0.5)
        followed += 1
    assert followed == 30


def test_boxes_land_in_letterboxed_model_pixels() -> None:
    img = np.zeros((240, 320, 3), np.uint8)
    img[0:60, 0:80] = 255
    aug = Augmenter(AugmentConfig(enabled=False), image_size=64, resize="letterbox")
    out, moved, ids = aug.apply(img, np.array([[0, 0, 80, 60]], np.float32), seed=0)
    # 320x240 -> 64x48 with 8-pixel bars above and below
    np.testing.assert_allclose(moved[0], [0, 8, 16, 20], atol=0.01)
    assert out[9:19, 1:15].min() > 200 and ids.tolist() == [0]


def test_train_crop_keeps_the_labelled_boxes_inside_when_they_fit() -> None:
    from training.config import AugmentConfig as Cfg

    aug = Augmenter(Cfg(train_crop=64, rotate=0, perspective=0, crop=0), image_size=96, resize="stretch")
    pixels = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    box = np.array([[40, 10, 60, 30]], np.float32)
    for seed in range(20):
        out, moved, ids = aug.apply(pixels, box, seed=seed)
        assert out.shape == (64, 64, 3) and ids.tolist() == [0]
        w, h = moved[0, 2] - moved[0, 0], moved[0, 3] - moved[0, 1]
        assert abs(w - 20) < 1e-3 and abs(h - 20) < 1e-3  # whole, only shifted
    with pytest.raises(ValueError, match=r"train_crop 128 exceeds data\.image_size 96"):
        Augmenter(Cfg(train_crop=128), image_size=96, resize="stretch")
