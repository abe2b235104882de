"""What updates the weights: AdamW with timm's parameter groups, the cosine schedule, EMA and DDP."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch import nn

from model.network import AuthLensNet
from training.config import TrainConfig
from training.train.startup import Dist


def build_optimizer(net: AuthLensNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (timm's grouping); heads at ``head_lr_scale``.

    With ``train.layer_decay`` the backbone's layers get timm's layer-wise rates (``lr_scale``
    per group, which timm's scheduler applies): the stem learns slowest, the last block fastest.
    """
    o = cfg.train
    heads = nn.ModuleDict({"auth": net.auth_head, "flag": net.flag_head})
    if o.layer_decay is None:
        backbone = param_groups_weight_decay(net.backbone, weight_decay=o.weight_decay)
    else:
        backbone = param_groups_layer_decay(
            net.backbone, weight_decay=o.weight_decay, layer_decay=o.layer_decay
        )
    groups = [{**g, "lr": o.lr} for g in backbone]  # the scheduler multiplies each by its lr_scale
    for g in param_groups_weight_decay(heads, weight_decay=o.weight_decay):
        groups.append({**g, "lr": o.lr * o.head_lr_scale})
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> CosineLRScheduler:
    """Cosine decay per step with linear warm-up (timm)."""
    o = cfg.train
    total = max(1, o.epochs * steps_per_epoch)
    warmup = min(round(o.warmup_epochs * steps_per_epoch), total - 1)
    return CosineLRScheduler(
        opt,
        t_initial=total,
        lr_min=o.lr * o.min_lr_ratio,
        warmup_t=warmup,
        warmup_lr_init=o.lr * 0.01,
        warmup_prefix=False,
        t_in_epochs=False,
    )


@dataclass
class Learner:
    """The network and everything that updates it, as one training step uses them."""

    net: AuthLensNet  # the bare network: what is saved and clipped
    model: nn.Module  # what is called: ``net``, or its DDP wrapper with several processes
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    ema: ModelEmaV3 | None

    @property
    def eval_net(self) -> AuthLensNet:
        """The weights that are validated and kept: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.net


def build_learner(net: AuthLensNet, cfg: TrainConfig, steps_per_epoch: int, d: Dist) -> Learner:
    """Optimizer, schedule and (with ``train.ema``) EMA for ``net``; DDP around it with several processes."""
    optimizer = build_optimizer(net, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    ema = ModelEmaV3(net, decay=cfg.train.ema_decay, use_warmup=True) if cfg.train.ema else None
    model: nn.Module = nn.parallel.DistributedDataParallel(net) if d.world > 1 else net
    return Learner(net=net, model=model, optimizer=optimizer, scheduler=scheduler, ema=ema)
