"""sar_jax.parity.convert_codec: the tables cover both codecs' state_dicts and Flax trees, the layouts,
bit-exact round trips, and one error listing every missing, unexpected or mis-shaped key."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

from sar_jax.core.errors import SarJaxError
from sar_jax.nn.compression import FactorizedPrior, ScaleHyperprior
from sar_jax.parity.convert_codec import conversion_table, flax_to_torch, torch_to_flax
from sar_torch_ref.models import FactorizedPrior as TorchFactorized
from sar_torch_ref.models import ScaleHyperprior as TorchHyperprior

TORCH = {"factorized": TorchFactorized, "hyperprior": TorchHyperprior}
FLAX = {"factorized": FactorizedPrior, "hyperprior": ScaleHyperprior}
CFGS = [{"in_channels": 1, "N": 8, "M": 6}, {"in_channels": 2, "N": 4, "M": 5}]
KINDS = ["factorized", "hyperprior"]


def _state_dict(kind: str, cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    sd = TORCH[kind](cfg).state_dict()
    return {k: v + 0.01 * torch.randn_like(v) for k, v in sd.items()}  # every entry distinct from its init


def _paths(tree) -> dict[tuple[str, ...], tuple[int, ...]]:
    return {tuple(str(k.key) for k in p): tuple(v.shape) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", CFGS)
def test_table_is_the_reference_state_dict_in_order_with_its_shapes(kind, cfg):
    sd = TORCH[kind](cfg).state_dict()
    table = conversion_table(kind, cfg["in_channels"], cfg["N"], cfg["M"])
    assert [(e.torch_key, e.torch_shape) for e in table] == [(k, tuple(v.shape)) for k, v in sd.items()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", CFGS)
def test_table_covers_exactly_the_flax_variables(kind, cfg):
    model = FLAX[kind].from_config(cfg)
    x = jax.ShapeDtypeStruct((1, 64, 64, cfg["in_channels"]), np.float32)
    variables = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)},
                                                  np.zeros(x.shape, x.dtype)))
    converted = torch_to_flax(TORCH[kind](cfg).state_dict(), kind)
    assert set(variables) == {"params"}
    assert _paths(converted) == _paths(variables)
    table = conversion_table(kind, cfg["in_channels"], cfg["N"], cfg["M"])
    assert {("params",) + e.path: e.flax_shape for e in table} == _paths(variables)


def test_layouts_are_the_documented_transposes():
    sd = _state_dict("hyperprior", CFGS[0])
    p = torch_to_flax(sd, "hyperprior")["params"]
    np.testing.assert_array_equal(p["g_a"]["conv1"]["kernel"], sd["g_a.conv1.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["h_a"]["conv0"]["kernel"], sd["h_a.conv0.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["g_s"]["deconv3"]["kernel"],
                                  sd["g_s.deconv3.weight"].numpy().transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(p["g_s"]["igdn2"]["gamma"], sd["g_s.igdn2.gamma"].numpy())
    np.testing.assert_array_equal(p["entropy_bottleneck"]["matrix1"], sd["entropy_bottleneck.matrix1"].numpy())
    assert p["h_a"]["conv0"]["kernel"].shape == (3, 3, 6, 8) and p["entropy_bottleneck"]["quantiles"].shape == (8, 1, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_is_bit_exact(kind):
    cfg = CFGS[1]
    sd = _state_dict(kind, cfg, seed=4)
    back = flax_to_torch(torch_to_flax(sd, kind, cfg), kind, cfg)
    assert list(back) == list(sd)
    for k in sd:
        assert back[k].dtype == torch.float32 and back[k].shape == sd[k].shape
        assert np.array_equal(back[k].numpy().view(np.uint32), sd[k].numpy().view(np.uint32)), k


def test_a_bad_state_dict_is_one_error_listing_every_problem():
    sd = _state_dict("factorized", CFGS[0])
    del sd["g_a.gdn1.beta"], sd["entropy_bottleneck.quantiles"]
    sd["g_a.gdn1.beta_reparam.pedestal"] = torch.zeros(1)  # CompressAI's buffers are not part of the contract
    sd["g_s.deconv2.weight"] = torch.zeros(8, 8, 3, 3)
    sd["entropy_bottleneck.factor3"] = torch.zeros(6, 3, 1, dtype=torch.int64)
    with pytest.raises(SarJaxError) as err:
        torch_to_flax(sd, "factorized")
    msg = str(err.value)
    assert "\n" not in msg and "factorized codec" in msg
    for part in ("missing 2 key(s): g_a.gdn1.beta, entropy_bottleneck.quantiles",
                 "unexpected 1 key(s): g_a.gdn1.beta_reparam.pedestal",
                 "g_s.deconv2.weight has shape (8, 8, 3, 3), expected (8, 8, 5, 5)",
                 "entropy_bottleneck.factor3 has dtype torch.int64, expected floating point"):
        assert part in msg


def test_a_hyperprior_state_dict_is_not_a_factorized_one_and_model_cfg_fixes_the_shapes():
    sd = _state_dict("hyperprior", CFGS[0])
    with pytest.raises(SarJaxError, match=r"unexpected 12 key\(s\): h_a.conv0.weight.*h_s.conv2.bias"):
        torch_to_flax(sd, "factorized")
    with pytest.raises(SarJaxError, match=r"g_a.conv0.weight has shape \(8, 1, 5, 5\), expected \(16, 1, 5, 5\)"):
        torch_to_flax(sd, "hyperprior", dict(CFGS[0], N=16))
    with pytest.raises(SarJaxError, match="model.kind 'baseline'"):
        torch_to_flax(sd, "baseline")


def test_bad_flax_variables_are_one_error_listing_every_problem():
    variables = torch_to_flax(_state_dict("hyperprior", CFGS[0]), "hyperprior")
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])
    del params["h_s"]["conv2"]["bias"]
    params["g_a"]["gdn0"]["gamma"] = np.zeros((8, 7), np.float32)
    with pytest.raises(SarJaxError) as err:
        flax_to_torch({"params": params, "batch_stats": {"bn": np.zeros(3)}}, "hyperprior")
    msg = str(err.value)
    for part in ("missing 1 key(s): params/h_s/conv2/bias", "unexpected 1 key(s): batch_stats/bn",
                 "params/g_a/gdn0/gamma has shape (8, 7), expected (8, 8)"):
        assert part in msg
