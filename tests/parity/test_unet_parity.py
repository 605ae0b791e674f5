"""sar_jax.parity.unet and convert_unet: the U-Net's forward, loss, gradients and lockstep Adam rows,
bit-exact weight conversion both ways, and one error listing every bad key."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sar_jax.core.errors import SarJaxError
from sar_jax.nn.unet import UNet
from sar_jax.parity.convert_unet import flax_to_torch, torch_to_flax
from sar_jax.parity.unet import check_unet_forward, check_unet_lockstep, torch_unet, unet_config


@pytest.mark.parametrize("size,features,depth", [(32, 8, 2), (64, 4, 3)])
def test_forward_loss_and_gradients(check_rows, size, features, depth):
    rows = check_unet_forward(size=size, batch=2, features=features, depth=depth, seed=0)
    check_rows(rows)
    quantities = [r["quantity"] for r in rows]
    assert {"x_hat max|diff|", "MSE loss |diff| / loss"} <= set(quantities)
    n_params = 2 * (3 * depth + 3)  # weight + bias of each of the 3 D + 3 convs
    assert sum(q.endswith(": relative error") for q in quantities) == n_params


def test_lockstep_adam(check_rows):
    rows = check_unet_lockstep(steps=5)
    check_rows(rows)
    ratio = next(r for r in rows if r["quantity"].startswith("loss first -> last"))["observed"]
    assert ratio < 0.95  # the 5 steps do train


@pytest.fixture(scope="module")
def cfg():
    return unet_config(features=4, depth=2, in_channels=2)


def test_round_trips_are_bit_exact(cfg):
    sd = torch_unet(cfg, seed=4).state_dict()
    variables = torch_to_flax(sd, cfg)
    assert variables["batch_stats"] == {}
    back = flax_to_torch(variables, cfg)
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    assert all(torch.equal(a, b) for a, b in zip(flax_to_torch(variables).values(), back.values()))  # inferred
    model = UNet.from_config(cfg)
    init = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 2)))
    again = torch_to_flax(flax_to_torch(init))
    flat = jax.tree_util.tree_leaves_with_path(init["params"])
    assert flat and all(np.array_equal(np.asarray(v), np.asarray(again["params"][p[0].key][p[1].key]))
                        for p, v in flat)


def test_one_error_lists_every_bad_key(cfg):
    sd = dict(torch_unet(cfg).state_dict())
    del sd["dec2b.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["enc1.weight"] = torch.zeros(4, 4, 5, 5)
    sd["dec1.bias"] = torch.zeros(2, dtype=torch.long)
    with pytest.raises(SarJaxError) as err:
        torch_to_flax(sd, cfg)
    msg = str(err.value)
    assert "depth 2, features 4, in_channels 2" in msg
    for part in ("missing 1 key(s): dec2b.bias", "unexpected 1 key(s): extra.weight",
                 "enc1.weight has shape (4, 4, 5, 5), expected (4, 4, 3, 3)",
                 "dec1.bias has dtype torch.int64, expected floating point"):
        assert part in msg


def test_flax_side_errors(cfg):
    variables = torch_to_flax(torch_unet(cfg).state_dict(), cfg)
    params = {k: dict(v) for k, v in variables["params"].items()}
    params["dec1a"]["kernel"] = jnp.zeros((3, 3, 1, 1))
    del params["enc3"]  # depth 2 has enc0 .. enc3
    with pytest.raises(SarJaxError, match=r"missing 2 key\(s\): params/enc3/kernel, params/enc3/bias \| .*"
                                          r"params/dec1a/kernel has shape \(3, 3, 1, 1\)"):
        flax_to_torch({"params": params, "batch_stats": {"bn": jnp.zeros(1)}}, cfg)
    with pytest.raises(SarJaxError, match="cannot infer the U-Net's depth"):
        torch_to_flax({"dec1.weight": torch.zeros(1, 1, 3, 3)})
