"""The reference learned codecs: GDN against its formula, the lower bound's gradient, the entropy
models' likelihoods, quantisation in both modes, the aux loss, shapes and state_dict keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sar_torch_ref.models import GDN, IGDN, EntropyBottleneck, FactorizedPrior, GaussianConditional, ScaleHyperprior
from sar_torch_ref.models.gdn import PEDESTAL, lower_bound

CFG = {"in_channels": 1, "N": 8, "M": 6}
MODELS = {"factorized": FactorizedPrior, "hyperprior": ScaleHyperprior}


def _model(kind: str, seed: int = 0, medians: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS[kind](CFG)
    with torch.no_grad():
        model.entropy_bottleneck.quantiles[:, 0, 1] = medians
    return model


def test_gdn_and_igdn_match_the_formula():
    torch.manual_seed(0)
    gdn, igdn = GDN(4).double(), IGDN(4).double()
    beta = 0.5 + torch.rand(4, dtype=torch.float64)
    gamma = 0.2 * torch.rand(4, 4, dtype=torch.float64)
    for m in (gdn, igdn):
        with torch.no_grad():
            m.beta.copy_(torch.sqrt(beta + PEDESTAL))
            m.gamma.copy_(torch.sqrt(gamma + PEDESTAL))
    x = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    xn = x.numpy()
    norm = beta.numpy()[None, :, None, None] + np.einsum("cj,njhw->nchw", gamma.numpy(), xn**2)
    with torch.no_grad():
        np.testing.assert_allclose(gdn(x).numpy(), xn / np.sqrt(norm), rtol=1e-12)
        np.testing.assert_allclose(igdn(x).numpy(), xn * np.sqrt(norm), rtol=1e-12)


def test_gdn_init_and_bounds():
    gdn = GDN(3)
    assert torch.all(gdn.beta == 1.0)  # sqrt(1 + 2**-36) rounds to 1 in float32
    off = ~torch.eye(3, dtype=torch.bool)
    assert torch.all(gdn.gamma[off] == 2.0**-18)
    np.testing.assert_allclose(torch.diagonal(gdn.gamma).detach().numpy(), math.sqrt(0.1 + PEDESTAL), rtol=1e-7)
    with torch.no_grad():  # stored values below the bounds: beta -> 1e-6, gamma -> 0
        gdn.beta.fill_(0.0)
        gdn.gamma.fill_(-1.0)
        x = torch.full((1, 3, 1, 1), 0.01)
        np.testing.assert_allclose(gdn(x).detach().numpy(), 0.01 / math.sqrt(1e-6), rtol=1e-5)
    assert [k for k, _ in gdn.state_dict().items()] == ["beta", "gamma"]


def test_lower_bound_gradient_passes_above_the_bound_or_downwards():
    x = torch.tensor([0.5, 2.0, 0.5, 2.0, 1.0], requires_grad=True)
    y = lower_bound(x, 1.0)
    assert y.tolist() == [1.0, 2.0, 1.0, 2.0, 1.0]
    y.backward(torch.tensor([1.0, 1.0, -1.0, -1.0, 3.0]))
    assert x.grad.tolist() == [0.0, 1.0, -1.0, -1.0, 3.0]


def _random_bottleneck(channels: int = 3, seed: int = 0) -> EntropyBottleneck:
    torch.manual_seed(seed)
    eb = EntropyBottleneck(channels).double()
    with torch.no_grad():
        for name, p in eb.named_parameters():
            if name != "quantiles":
                p.add_(0.5 * torch.randn_like(p))
    return eb


def test_entropy_bottleneck_init():
    eb = EntropyBottleneck(2)
    scale = 10.0 ** (1 / 5)
    for i, f in enumerate((3, 3, 3, 3, 1)):
        assert torch.all(getattr(eb, f"matrix{i}") == torch.tensor(math.log(math.expm1(1 / scale / f))))
        assert getattr(eb, f"bias{i}").abs().max() <= 0.5
    assert all(torch.all(getattr(eb, f"factor{i}") == 0) for i in range(4))
    assert eb.quantiles.tolist() == [[[-10.0, 0.0, 10.0]]] * 2
    assert [tuple(v.shape) for v in eb.state_dict().values()] == [
        (2, 3, 1), (2, 3, 1), (2, 3, 1), (2, 3, 3), (2, 3, 1), (2, 3, 1), (2, 3, 3), (2, 3, 1), (2, 3, 1),
        (2, 3, 3), (2, 3, 1), (2, 3, 1), (2, 1, 3), (2, 1, 1), (2, 1, 3)]


def test_entropy_bottleneck_cdf_is_monotone_and_likelihoods_sum_to_one_over_the_integers():
    eb = _random_bottleneck()
    grid = torch.linspace(-400, 400, 20001, dtype=torch.float64).repeat(3, 1, 1)
    with torch.no_grad():
        cdf = torch.sigmoid(eb.logits_cumulative(grid))
        assert torch.all(cdf[..., 1:] >= cdf[..., :-1])
        assert float(cdf[..., 0].max()) < 1e-12 and float(cdf[..., -1].min()) > 1 - 1e-12
        k = torch.arange(-400, 401, dtype=torch.float64)
        y = k.reshape(1, 1, 1, -1).repeat(1, 3, 1, 1)
        lik = eb.likelihood(y)
    assert lik.shape == y.shape and float(lik.min()) >= 1e-9
    # the 1e-9 floor adds at most 801 x 1e-9 to each channel's sum
    np.testing.assert_allclose(lik.sum(dim=(0, 2, 3)).numpy(), 1.0, atol=1e-6)
    upper = torch.sigmoid(eb.logits_cumulative(torch.tensor([0.5], dtype=torch.float64).repeat(3, 1, 1)))
    lower = torch.sigmoid(eb.logits_cumulative(torch.tensor([-0.5], dtype=torch.float64).repeat(3, 1, 1)))
    np.testing.assert_allclose(lik[0, :, 0, 400].detach().numpy(), (upper - lower).reshape(3).detach().numpy(),
                               rtol=1e-12)


def test_gaussian_conditional_matches_the_normal_cdf():
    y = torch.tensor([0.0, 0.4, -1.0, 2.5, -7.0, 30.0], dtype=torch.float64)
    s = torch.tensor([1.0, 0.05, 2.0, 0.7, 3.0, 0.5], dtype=torch.float64)
    phi = lambda t: 0.5 * math.erfc(-t / math.sqrt(2))  # noqa: E731
    expected = [max(phi((0.5 - abs(a)) / max(b, 0.11)) - phi((-0.5 - abs(a)) / max(b, 0.11)), 1e-9)
                for a, b in zip(y.tolist(), s.tolist())]
    np.testing.assert_allclose(GaussianConditional.likelihood(y, s).numpy(), expected, rtol=1e-12)
    k = torch.arange(-60, 61, dtype=torch.float64)
    assert abs(float(GaussianConditional.likelihood(k, torch.full_like(k, 4.0)).sum()) - 1.0) < 1e-6


@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_forward_shapes_and_keys(kind):
    model = _model(kind)
    x_hat, lik = model(torch.rand(2, 1, 64, 64))
    assert x_hat.shape == (2, 1, 64, 64)
    assert lik["y"].shape == (2, 6, 4, 4)
    if kind == "hyperprior":
        assert set(lik) == {"y", "z"} and lik["z"].shape == (2, 8, 1, 1)
        assert {k.split(".")[0] for k in model.state_dict()} == {"g_a", "g_s", "h_a", "h_s", "entropy_bottleneck"}
    else:
        assert set(lik) == {"y"}
    assert all(float(v.detach().min()) >= 1e-9 and float(v.detach().max()) <= 1.0 for v in lik.values())
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == (8 if kind == "factorized" else 14) and all(m.bias is not None for m in convs)


def _decoder_input(model: nn.Module, x: torch.Tensor, noise=None):
    seen = {}
    handle = model.g_s.register_forward_pre_hook(lambda _, args: seen.update(y_hat=args[0]))
    x_hat, lik = model(x, noise)
    handle.remove()
    return seen["y_hat"], x_hat, lik


def test_factorized_eval_rounds_around_the_medians_and_train_adds_the_given_noise():
    model = _model("factorized", medians=0.3)
    x = torch.rand(2, 1, 64, 64)
    y = model.g_a(x)
    m = 0.3
    y_hat, _, lik = _decoder_input(model.eval(), x)
    torch.testing.assert_close(y_hat, torch.round(y - m) + m, rtol=0, atol=0)
    torch.testing.assert_close(lik["y"], model.entropy_bottleneck.likelihood(y_hat), rtol=0, atol=0)
    u = torch.rand(y.shape) - 0.5
    y_hat_t, x_hat, lik_t = _decoder_input(model.train(), x, {"y": u})
    torch.testing.assert_close(y_hat_t, y + (torch.round(y - m) + m - y), rtol=0, atol=0)
    torch.testing.assert_close(lik_t["y"], model.entropy_bottleneck.likelihood(y + u), rtol=0, atol=0)
    x_hat.sum().backward()  # straight-through: the distortion reaches the encoder
    assert float(model.g_a.conv0.weight.grad.abs().sum()) > 0
    y_hat_a, _, _ = _decoder_input(model, x)  # without explicit noise: rounded input, drawn noise
    torch.testing.assert_close(y_hat_a, y_hat_t)


def test_hyperprior_eval_rounds_y_to_integers_and_z_around_its_medians():
    model = _model("hyperprior", medians=-0.25).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(torch.abs(y))
        y_hat, _, lik = _decoder_input(model, x)
        z_hat = torch.round(z + 0.25) - 0.25
        scales = model.h_s(z_hat)
    torch.testing.assert_close(y_hat, torch.round(y), rtol=0, atol=0)
    torch.testing.assert_close(lik["z"], model.entropy_bottleneck.likelihood(z_hat), rtol=0, atol=0)
    torch.testing.assert_close(lik["y"], GaussianConditional.likelihood(y_hat, scales), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_aux_loss_moves_only_the_quantiles_and_the_main_loss_never_does(kind):
    model = _model(kind).train()
    x = torch.rand(2, 1, 64, 64)
    x_hat, lik = model(x)
    bpp = sum(-torch.log2(v).sum() for v in lik.values()) / (2 * 64 * 64)
    (100 * torch.mean((x_hat - x) ** 2) + bpp).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["entropy_bottleneck.quantiles"] is None
    assert all(g is not None for n, g in grads.items() if not n.endswith("quantiles"))
    assert float(grads["g_a.conv0.weight"].abs().sum()) > 0
    assert float(grads["entropy_bottleneck.matrix0"].abs().sum()) > 0
    model.zero_grad(set_to_none=True)
    aux = model.aux_loss()
    t = math.log(2 / 1e-9 - 1)
    eb = model.entropy_bottleneck
    expected = torch.abs(eb.logits_cumulative(eb.quantiles) - torch.tensor([-t, 0.0, t])).sum()
    torch.testing.assert_close(aux, expected)
    aux.backward()
    assert [n for n, p in model.named_parameters() if p.grad is not None] == ["entropy_bottleneck.quantiles"]
    assert float(eb.quantiles.grad.abs().sum()) > 0


def test_default_torch_init_is_seeded():
    a, b = _model("hyperprior", seed=5).state_dict(), _model("hyperprior", seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    conv = _model("factorized").g_a.conv1
    bound = 1 / math.sqrt(8 * 25)  # torch's default: kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), ...)
    top = float(conv.weight.detach().abs().max())
    assert 0.9 * bound < top <= bound
