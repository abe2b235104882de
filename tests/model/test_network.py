"""AuthLensNet: exact class-activation maps, output shapes, and the serving graph's arithmetic."""

from __future__ import annotations

import pytest
import torch

from model.flags import FLAG_NAMES
from model.network import AuthLensNet, NetworkSpec, ServingGraph


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


def test_maps_average_to_their_logits_exactly(net: AuthLensNet) -> None:
    with torch.no_grad():
        out = net(torch.randn(2, 3, 128, 128))
    torch.testing.assert_close(out["cam"].mean((1, 2)), out["counterfeit_logit"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["flag_maps"].mean((2, 3)), out["flag_logits"], rtol=1e-5, atol=1e-5)


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
