"""The offline EfficientNet-Lite0 ImageNet weights load into timm and really are ImageNet-trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from model.network import (
    AuthLensNet,
    NetworkSpec,
    WeightsError,
    create_backbone,
    create_imagenet_lite0,
)

# ImageNet-1k class indices.
EGYPTIAN_CAT, TABBY, TIGER_CAT = 285, 281, 282
ESPRESSO = 967


def _top5(model: torch.nn.Module, image: np.ndarray) -> list[int]:
    img = Image.fromarray(image).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    x = (x - 0.5) / 0.5  # the package's weights use mean = std = 0.5
    with torch.no_grad():
        return model(x).topk(5).indices[0].tolist()


def test_imagenet_weights_rank_the_right_class_first() -> None:
    model = create_imagenet_lite0()
    cat = _top5(model, skdata.chelsea())
    coffee = _top5(model, skdata.coffee())
    assert cat[0] == EGYPTIAN_CAT and {TABBY, TIGER_CAT} & set(cat)
    assert coffee[0] == ESPRESSO


def test_random_init_does_not_recognise_the_cat() -> None:
    backbone, _, _ = create_backbone(NetworkSpec(pretrained="none"))
    head = torch.nn.Linear(backbone.num_features, 1000)
    torch.manual_seed(0)
    model = torch.nn.Sequential(backbone, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head).eval()
    assert _top5(model, skdata.chelsea())[0] != EGYPTIAN_CAT


def test_other_timm_models_work_with_random_init_or_fail_clearly(tmp_path) -> None:
    net = AuthLensNet(NetworkSpec(backbone="mobilenetv3_small_050", pretrained="none", num_flags=3))
    out = net.eval()(torch.zeros(1, 3, 64, 64))
    assert out["flag_logits"].shape == (1, 3)
    with pytest.raises(WeightsError, match="only available offline for efficientnet_lite0"):
        create_backbone(NetworkSpec(backbone="resnet18", pretrained="imagenet"))
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone(NetworkSpec(backbone="resnet18", pretrained=str(tmp_path / "missing.pth")))
    with pytest.raises(RuntimeError, match="Unknown model"):
        create_backbone(NetworkSpec(backbone="no_such_net", pretrained="none"))


def test_local_checkpoint_path_loads_and_mismatch_is_named(tmp_path) -> None:
    backbone, _, _ = create_backbone(NetworkSpec(backbone="resnet18", pretrained="none"))
    path = tmp_path / "r18.pth"
    torch.save(backbone.state_dict(), path)
    loaded, _, _ = create_backbone(NetworkSpec(backbone="resnet18", pretrained=str(path)))
    assert torch.equal(loaded.state_dict()["conv1.weight"], backbone.state_dict()["conv1.weight"])
    with pytest.raises(WeightsError, match="does not fit timm model 'efficientnet_lite0'"):
        create_backbone(NetworkSpec(backbone="efficientnet_lite0", pretrained=str(path)))
