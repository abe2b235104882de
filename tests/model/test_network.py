"""AuthLensNet: exact class-activation maps, output shapes, and the serving graph's arithmetic."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from model.flags import FLAG_NAMES
from model.network import AuthLensNet, NetworkSpec, ServingGraph, pool_map


@pytest.fixture(scope="module")
def net() -> AuthLensNet:
    torch.manual_seed(0)
    net = AuthLensNet(NetworkSpec(pretrained="none", drop_rate=0.0)).eval()
    # random heads with a visible bias, so an off-by-bias map would show
    with torch.no_grad():
        net.auth_head.bias.fill_(0.3)
        net.flag_head.bias.normal_()
    return net


def test_outputs_have_the_documented_shapes(net: AuthLensNet) -> None:
    with torch.no_grad():
        out = net(torch.randn(3, 3, 96, 64))
    f = len(FLAG_NAMES)
    assert out["counterfeit_logit"].shape == (3,)
    assert out["flag_logits"].shape == (3, f)
    assert out["cam"].shape == (3, 3, 2)  # input / 32
    assert out["flag_maps"].shape == (3, f, 3, 2)
    assert out["embedding"].shape == (3, net.embedding_dim) and net.embedding_dim == 1280


def test_maps_pool_to_their_logits_exactly(net: AuthLensNet) -> None:
    with torch.no_grad():
        out = net(torch.randn(2, 3, 128, 128))
    r = net.spec.pool_r
    lse = (torch.logsumexp(r * out["cam"].flatten(1), 1) - math.log(16)) / r
    torch.testing.assert_close(lse, out["counterfeit_logit"], rtol=1e-5, atol=1e-5)
    flag_lse = (torch.logsumexp(r * out["flag_maps"].flatten(2), 2) - math.log(16)) / r
    torch.testing.assert_close(flag_lse, out["flag_logits"], rtol=1e-5, atol=1e-5)
    # a smooth maximum: above the average, at most the peak
    assert (out["counterfeit_logit"] >= out["cam"].mean((1, 2)) - 1e-6).all()
    assert (out["counterfeit_logit"] <= out["cam"].amax((1, 2)) + 1e-6).all()


def test_one_bad_region_moves_lse_more_than_mean() -> None:
    cells = torch.full((1, 7, 7), -4.0)
    cells[0, 3, 3] = 6.0  # one tell among 48 genuine-looking cells
    assert pool_map(cells, "lse", 1.0).item() > 1.5  # counterfeit
    assert pool_map(cells, "mean", 1.0).item() < -3.5  # averaged away


def test_mean_pooling_is_a_linear_head_on_average_pooled_features(net: AuthLensNet) -> None:
    mean_net = AuthLensNet(replace(net.spec, pool="mean")).eval()
    mean_net.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        out = mean_net(x)
        pooled = mean_net.features(x).mean((2, 3))
    torch.testing.assert_close(
        out["counterfeit_logit"], mean_net.auth_head(pooled).squeeze(1), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(out["flag_logits"], mean_net.flag_head(pooled), rtol=1e-5, atol=1e-5)


def test_frozen_parts_get_no_gradient_and_keep_their_statistics() -> None:
    torch.manual_seed(0)
    net = AuthLensNet(NetworkSpec(pretrained="none", freeze=["conv_stem", "bn1", "blocks.0"])).train()
    stats = net.backbone.bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))["counterfeit_logit"].sum().backward()
    assert (
        net.backbone.conv_stem.weight.grad is None and net.backbone.blocks[0][0].conv_dw.weight.grad is None
    )
    assert net.backbone.blocks[1][0].conv_pw.weight.grad is not None
    assert torch.equal(net.backbone.bn1.running_mean, stats)  # not updated in train mode
    assert net.backbone.blocks[1].training and not net.backbone.blocks[0].training


def test_unknown_parts_and_pooling_are_refused_naming_what_exists() -> None:
    with pytest.raises(ValueError, match=r"does not have; its top-level parts are: conv_stem, bn1, blocks"):
        AuthLensNet(NetworkSpec(pretrained="none", freeze=["stem"]))
    with pytest.raises(ValueError, match="Allowed: lse, mean"):
        AuthLensNet(NetworkSpec(pretrained="none", pool="max"))


def test_channels_last_changes_speed_not_results(net: AuthLensNet) -> None:
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = net(x)["counterfeit_logit"]
        cl = AuthLensNet(net.spec).eval()
        cl.load_state_dict(net.state_dict())
        cl = cl.to(memory_format=torch.channels_last)
        b = cl(x.contiguous(memory_format=torch.channels_last))["counterfeit_logit"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_serving_graph_normalises_uint8_and_applies_the_temperature(net: AuthLensNet) -> None:
    pixels = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    graph = ServingGraph(net, temperature=2.5).eval()
    with torch.no_grad():
        p_genuine, flag_probs, cam, flag_maps, emb = graph(pixels)
        mean = torch.tensor(net.mean).view(1, 3, 1, 1)
        std = torch.tensor(net.std).view(1, 3, 1, 1)
        ref = net((pixels.permute(0, 3, 1, 2).float() / 255.0 - mean) / std)
    torch.testing.assert_close(
        p_genuine, torch.sigmoid(-ref["counterfeit_logit"] / 2.5), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(flag_probs, torch.sigmoid(ref["flag_logits"]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cam, ref["cam"], rtol=1e-4, atol=1e-4)
    assert flag_maps.shape[1] == len(FLAG_NAMES) and emb.shape == (2, net.embedding_dim)


def test_dropout_is_active_only_in_training(net: AuthLensNet) -> None:
    spec = NetworkSpec(pretrained="none", drop_rate=0.5)
    torch.manual_seed(1)
    model = AuthLensNet(spec)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)["counterfeit_logit"], model(x)["counterfeit_logit"])
        model.train()
        a, b = model(x)["flag_logits"], model(x)["flag_logits"]
    assert not torch.equal(a, b)


def test_serving_graph_exports_the_flags_asked_for_and_none_without_flags(net: AuthLensNet) -> None:
    from model.bundle import OUTPUT_NAMES, output_names

    pixels = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        full = ServingGraph(net).eval()(pixels)
        pick = ServingGraph(net, flags=[6, 2]).eval()
        p_genuine, flag_probs, cam, flag_maps, emb = pick(pixels)
        none = ServingGraph(net, flags=[]).eval()
        bare = none(pixels)
    assert pick.output_names == OUTPUT_NAMES and none.output_names == output_names(False)
    torch.testing.assert_close(flag_probs, full[1][:, [6, 2]], rtol=0, atol=0)
    torch.testing.assert_close(flag_maps, full[3][:, [6, 2]], rtol=0, atol=0)
    assert flag_probs.shape == (2, 2) and flag_maps.shape == (2, 2, *cam.shape[1:])
    for got, want in zip((p_genuine, cam, emb), (full[0], full[2], full[4]), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # without flags: p_genuine, cam, embedding only (a zero-channel output does not export)
    assert len(bare) == 3 == len(none.output_names)
    for got, want in zip(bare, (full[0], full[2], full[4]), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="distinct indices into the flag head of 7"):
        ServingGraph(net, flags=[1, 1])
    with pytest.raises(ValueError, match=r"\(0 to 6\)"):
        ServingGraph(net, flags=[7])
