"""The reference U-Net: shapes, the state_dict contract (deepdespeckling's names and widths at
depth 5), the residual, max-pool / nearest-upsampling structure and init."""

from __future__ import annotations

import math

import pytest
import torch

from sar_jax.core.config import default_config
from sar_jax.parity.convert_unet import conversion_table, layer_channels
from sar_torch_ref.models.unet import UNet


def _cfg(depth: int = 2, features: int = 4, in_channels: int = 1) -> dict:
    return dict(default_config()["model"], kind="unet", unet_depth=depth, unet_features=features,
                in_channels=in_channels)


def test_shapes_and_aux():
    torch.manual_seed(0)
    model = UNet(_cfg(2, 4, 2)).eval()
    with torch.no_grad():
        x_hat, aux = model(torch.randn(3, 2, 32, 48))
    assert x_hat.shape == (3, 2, 32, 48) and x_hat.dtype == torch.float32 and aux == {}
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("depth,features,c_in", [(1, 4, 1), (2, 4, 1), (3, 5, 2), (4, 48, 1)])
def test_state_dict_is_the_conversion_table(depth, features, c_in):
    sd = UNet(_cfg(depth, features, c_in)).state_dict()
    table = conversion_table(depth)
    assert list(sd) == [e.torch_key for e in table]
    dims = layer_channels(depth, features, c_in)
    for e in table:
        cin, cout = dims[e.layer]
        assert tuple(sd[e.torch_key].shape) == ((cout, cin, 3, 3) if e.kind == "conv" else (cout,))


def test_depth5_is_deepdespeckling_model():
    """MERLIN / SAR2SAR's Model, layer for layer: (name, in, out) of every 3x3 conv."""
    expected = ([("enc0", 1, 48)] + [(f"enc{i}", 48, 48) for i in range(1, 7)]
                + [("dec5", 96, 96), ("dec5b", 96, 96)]
                + [(n, c, 96) for lvl in (4, 3, 2) for n, c in ((f"dec{lvl}", 144), (f"dec{lvl}b", 96))]
                + [("dec1a", 97, 64), ("dec1b", 64, 32), ("dec1", 32, 1)])
    got = [(name, m.in_channels, m.out_channels) for name, m in UNet(_cfg(5, 48)).named_children()]
    assert got == expected
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) and m.bias is not None
               for m in UNet(_cfg(5, 48)).children())


def test_zero_last_conv_is_identity():
    torch.manual_seed(1)
    model = UNet(_cfg())
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert float((model(x)[0] - x).abs().max()) > 1e-3
        model.dec1.weight.zero_()
        model.dec1.bias.zero_()
        assert torch.equal(model(x)[0], x)


def test_output_unbounded():
    """No squashing: with zero biases the net is positively homogeneous, so scaling the input by 1000
    scales the output by 1000."""
    torch.manual_seed(2)
    model = UNet(_cfg())
    with torch.no_grad():
        for m in model.children():
            m.bias.zero_()
        x = torch.randn(1, 1, 32, 32)
        y1, y2 = model(x)[0], model(1000.0 * x)[0]
        torch.testing.assert_close(y2, 1000.0 * y1, rtol=1e-4, atol=1e-3)
        assert float(y2.abs().max()) > 100.0


def test_torch_default_init():
    torch.manual_seed(3)
    model = UNet(_cfg(2, 32))
    w = model.enc1.weight.detach()
    bound = 1.0 / math.sqrt(9 * 32)
    assert float(w.abs().max()) <= bound
    assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.05 * bound
