"""Inference computes the frozen prefix the fine-tuned and the reference backbones share once.

Frozen parts never train and the reference starts as a copy of the backbone, so a frozen prefix
of the forward order is the same function in both; sharing it must give the two-pass outputs,
and anything that breaks the premise (a gap in the frozen parts, different weights, another
backbone) must fall back to two full passes.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from model.network import AuthLensNet, NetworkSpec, forward_steps, frozen_prefix_length

PREFIX = ("conv_stem", "bn1", "blocks.0", "blocks.1")  # configs/sneakers.yaml
STEPS = ("conv_stem", "bn1", *(f"blocks.{i}" for i in range(7)), "conv_head", "bn2")


def _trained(spec: NetworkSpec) -> AuthLensNet:
    """A network whose trainable backbone parts moved away from the reference, as after training."""
    torch.manual_seed(0)
    net = AuthLensNet(spec).eval()
    with torch.no_grad():
        for p in net.backbone.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
        net.auth_head.bias.fill_(0.3)
    return net


def _both(net: AuthLensNet, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Outputs with the prefix shared and with two full passes."""
    with torch.no_grad():
        net.share_frozen_prefix = True
        shared = net(x)
        net.share_frozen_prefix = False
        full = net(x)
        net.share_frozen_prefix = True
    return shared, full


def _calls(module: nn.Module, x: torch.Tensor, net: AuthLensNet) -> int:
    count = [0]
    handle = module.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    with torch.no_grad():
        net(x)
    handle.remove()
    return count[0]


def test_the_frozen_prefix_runs_once_and_gives_the_two_pass_outputs() -> None:
    net = _trained(NetworkSpec(pretrained="none", freeze=PREFIX, pool="mean"))
    x = torch.randn(3, 3, 96, 96)
    assert net.shared_steps() == 4
    assert forward_steps(net.backbone) == STEPS
    shared, full = _both(net, x)
    for name, value in shared.items():
        assert (value - full[name]).abs().max().item() <= 1e-6, name
    assert not torch.allclose(shared["embedding"], net.features(x).mean((2, 3)))  # the reference's
    assert net.reference is not None
    assert _calls(net.backbone.conv_stem, x, net) == 1 and _calls(net.reference.conv_stem, x, net) == 0
    assert _calls(net.reference.blocks[2], x, net) == 1 and _calls(net.reference.conv_head, x, net) == 1


def test_training_steps_and_finetuned_features_are_unchanged() -> None:
    net = _trained(NetworkSpec(pretrained="none", freeze=PREFIX, drop_rate=0.0))
    x = torch.randn(2, 3, 64, 64)
    net.train()
    assert net.reference is not None and _calls(net.reference.conv_head, x, net) == 0
    with torch.no_grad():
        out = net(x)
    torch.testing.assert_close(out["embedding"], net.features(x).mean((2, 3)), rtol=0, atol=0)
    finetuned = AuthLensNet(NetworkSpec(pretrained="none", freeze=PREFIX, ood_features="finetuned")).eval()
    assert finetuned.shared_steps() == 0


@pytest.mark.parametrize(
    ("freeze", "want"),
    [
        ((), 0),
        (PREFIX, 4),
        (("bn1", "conv_stem", "blocks.1", "blocks.0"), 4),  # order of the names does not matter
        (("conv_stem", "bn1", "blocks"), 9),  # a parent of steps
        (("conv_stem", "bn1", "blocks.1"), 0),  # a gap: blocks.0 trains
        (("blocks.0", "blocks.1"), 0),  # not from the start
        (("conv_stem", "bn1", "blocks.0", "blocks.1.0"), 0),  # part of a step only
        (("conv_stem", "bn1", "blocks.0", "conv_head"), 0),  # a frozen part after the prefix
    ],
)
def test_only_an_exact_contiguous_prefix_is_shared(freeze: tuple[str, ...], want: int) -> None:
    assert frozen_prefix_length(STEPS, freeze) == want


def test_different_prefix_weights_fall_back_to_two_passes_until_they_are_equal_again() -> None:
    net = _trained(NetworkSpec(pretrained="none", freeze=PREFIX))
    x = torch.randn(2, 3, 64, 64)
    assert net.reference is not None
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.reference.blocks[1][0].bn1.running_var.mul_(1.5)  # a buffer differs
    assert net.shared_steps() == 0
    shared, full = _both(net, x)
    torch.testing.assert_close(shared["embedding"], full["embedding"], rtol=0, atol=0)
    assert _calls(net.reference.conv_stem, x, net) == 1
    net.load_state_dict(state)  # loading weights decides again
    assert net._shared == 4 and _calls(net.reference.conv_stem, x, net) == 0
    net.eval()
    with torch.no_grad():
        net.backbone.conv_stem.weight.add_(1e-3)  # a parameter differs
    assert net.shared_steps() == 0


def test_a_backbone_of_unknown_order_runs_in_full() -> None:
    assert forward_steps(nn.Sequential(nn.Conv2d(3, 8, 3))) is None
    net = AuthLensNet(NetworkSpec(pretrained="none", freeze=PREFIX))
    net.backbone.set_grad_checkpointing(True)
    assert forward_steps(net.backbone) is None and net.eval().shared_steps() == 0
    old = AuthLensNet(replace(NetworkSpec(pretrained="none", freeze=PREFIX), backbone="efficientnet_lite0"))
    assert old.eval().shared_steps() == 4  # checkpoints from before 2026-12 share it too
