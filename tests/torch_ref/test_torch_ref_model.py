"""The reference model: shapes, state_dict keys (the JAX converter's contract), initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sar_jax.core.config import default_config
from sar_torch_ref.models import SARAutoencoder

BASELINE = default_config()["model"]  # = configs/baseline.json's model section


@pytest.fixture(scope="module")
def baseline_model() -> SARAutoencoder:
    torch.manual_seed(0)
    return SARAutoencoder(BASELINE)


def test_baseline_shapes(baseline_model):
    x = torch.rand(1, 1, 256, 256)
    with torch.no_grad():
        x_hat, z = baseline_model.eval()(x)
    assert z.shape == (1, 16, 16, 16)
    assert x_hat.shape == (1, 1, 256, 256)
    assert float(x_hat.min()) > 0.0 and float(x_hat.max()) < 1.0  # sigmoid output


def test_tiny_non_square_shapes():
    cfg = dict(BASELINE, base_channels=4, latent_channels=3, in_channels=2)
    model = SARAutoencoder(cfg)
    x_hat, z = model(torch.rand(2, 2, 32, 48))
    assert z.shape == (2, 3, 2, 3)
    assert x_hat.shape == (2, 2, 32, 48)


def test_state_dict_keys_and_shapes(baseline_model):
    b, lat, k = 64, 16, 5
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected: dict[str, tuple] = {}
    for i, (cin, cout) in enumerate([(1, b), (b, 2 * b), (2 * b, 4 * b)]):
        expected[f"encoder.block{i}.conv.weight"] = (cout, cin, k, k)
        for p in bn:
            expected[f"encoder.block{i}.bn.{p}"] = () if p == "num_batches_tracked" else (cout,)
    expected["encoder.final.weight"] = (lat, 4 * b, k, k)
    expected["encoder.final.bias"] = (lat,)
    for i, (cin, cout) in enumerate([(lat, 4 * b), (4 * b, 2 * b), (2 * b, b)]):
        expected[f"decoder.block{i}.deconv.weight"] = (cin, cout, k, k)  # ConvTranspose2d: (in, out, k, k)
        for p in bn:
            expected[f"decoder.block{i}.bn.{p}"] = () if p == "num_batches_tracked" else (cout,)
    expected["decoder.final.weight"] = (b, 1, k, k)
    expected["decoder.final.bias"] = (1,)
    got = {key: tuple(v.shape) for key, v in baseline_model.state_dict().items()}
    assert got == expected


def test_layer_hyperparameters(baseline_model):
    for block in (baseline_model.encoder.block0, baseline_model.encoder.block1, baseline_model.encoder.block2):
        assert block.conv.stride == (2, 2) and block.conv.padding == (2, 2) and block.conv.bias is None
        assert block.bn.eps == 1e-5 and block.bn.momentum == 0.1
        assert isinstance(block.act, nn.LeakyReLU) and block.act.negative_slope == 0.2
    for block in (baseline_model.decoder.block0, baseline_model.decoder.block1, baseline_model.decoder.block2):
        d = block.deconv
        assert d.stride == (2, 2) and d.padding == (2, 2) and d.output_padding == (1, 1) and d.bias is None
        assert isinstance(block.act, nn.ReLU)
    assert baseline_model.decoder.final.output_padding == (1, 1)


def test_kaiming_fan_out_init(baseline_model):
    a = BASELINE["negative_slope"]
    gain = math.sqrt(2.0 / (1.0 + a * a))
    convs = [(n, m) for n, m in baseline_model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 8
    for name, m in convs:
        k = m.kernel_size[0] * m.kernel_size[1]
        # torch's fan_out is weight.size(0) * k*k: out_channels for Conv2d, in_channels for ConvTranspose2d
        fan_out = (m.in_channels if isinstance(m, nn.ConvTranspose2d) else m.out_channels) * k
        expected = gain / math.sqrt(fan_out)
        std = float(m.weight.detach().std())
        assert abs(std - expected) / expected < 0.05, (name, std, expected)
        assert abs(float(m.weight.detach().mean())) < 0.1 * expected, name
        if m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0, name
    bns = [m for m in baseline_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6
    for m in bns:
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        assert torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)


def test_init_is_seeded():
    cfg = dict(BASELINE, base_channels=4, latent_channels=4)
    torch.manual_seed(3)
    a = SARAutoencoder(cfg).state_dict()
    torch.manual_seed(3)
    b = SARAutoencoder(cfg).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
