"""The despeckling U-Net: shapes, parameter tree, init, the residual, and its dependency radius
(derived, then checked by perturbing single pixels and by cropping windows)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sar_jax.core.config import default_config
from sar_jax.nn.registry import build_model, downsampling
from sar_jax.nn.unet import UNet, _trace, unet_dependency_radius, unet_layers, unet_tile_halo
from sar_jax.parity.convert_unet import layer_channels, layer_names


def _unet(depth: int, features: int = 4, size: int = 32, seed: int = 0) -> tuple[UNet, dict, Any]:
    model = UNet(features=features, depth=depth)
    variables = jax.jit(model.init)(jax.random.PRNGKey(seed), jnp.zeros((1, size, size, 1)))
    return model, variables, jax.jit(lambda v, x: model.apply(v, x)[0])


@pytest.fixture(scope="module")
def depth2():
    return _unet(2, size=64)


def test_from_config_shapes_and_aux():
    cfg = dict(default_config()["model"], kind="unet", unet_features=4, unet_depth=2, in_channels=2)
    model = build_model(cfg)
    assert isinstance(model, UNet) and (model.features, model.depth, model.in_channels) == (4, 2, 2)
    assert downsampling(model) == 4
    assert UNet.from_config(default_config()["model"]).DOWNSAMPLING == 16  # the default depth 4
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 48, 2)))
    x_hat, aux = jax.eval_shape(lambda v, x: model.apply(v, x, train=True), variables, jnp.ones((3, 32, 48, 2)))
    assert x_hat.shape == (3, 32, 48, 2) and x_hat.dtype == jnp.float32 and aux == {}
    assert set(variables) == {"params"}  # no BatchNorm


@pytest.mark.parametrize("depth,features,c_in", [(2, 4, 1), (3, 5, 2), (5, 48, 1)])
def test_param_tree_follows_the_layer_list(depth, features, c_in):
    model = UNet(in_channels=c_in, features=features, depth=depth)
    size = 2**depth
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, c_in))))["params"]
    names = [op.name for op in unet_layers(depth, features, c_in) if op.kind == "conv"]
    assert names == layer_names(depth) and set(params) == set(names)
    for name, (cin, cout) in zip(names, layer_channels(depth, features, c_in)):
        assert params[name]["kernel"].shape == (3, 3, cin, cout) and params[name]["bias"].shape == (cout,)
    if depth == 5:  # deepdespeckling's MERLIN / SAR2SAR Model
        assert params["dec1a"]["kernel"].shape == (3, 3, 97, 64) and params["dec1b"]["kernel"].shape == (3, 3, 64, 32)
        assert params["dec4"]["kernel"].shape == (3, 3, 144, 96)


def test_init_is_torch_conv2d_default():
    model = UNet(features=32, depth=1)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), jnp.zeros((1, 2, 2, 1)))["params"]
    for name in ("enc1", "dec1a"):
        k, b = np.asarray(params[name]["kernel"]), np.asarray(params[name]["bias"])
        bound = 1.0 / math.sqrt(9 * k.shape[2])
        assert np.abs(k).max() <= bound and np.abs(b).max() <= bound
        assert abs(k.std() - bound / math.sqrt(3)) < 0.05 * bound  # uniform(-bound, bound)


def test_residual_zero_last_conv_is_identity(depth2):
    model, variables, f = depth2
    params = jax.tree_util.tree_map(lambda v: v, variables["params"])
    params["dec1"] = jax.tree_util.tree_map(jnp.zeros_like, params["dec1"])
    x = np.random.default_rng(0).standard_normal((1, 64, 64, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(f({"params": params}, x)), x)
    assert float(jnp.max(jnp.abs(f(variables, x) - x))) > 1e-3  # the untouched net does change x


def test_radius_values():
    radii = [unet_dependency_radius(d) for d in range(1, 6)]
    assert radii == [5 * 2**d - 2 for d in range(1, 6)] == [8, 18, 38, 78, 158]
    assert [unet_tile_halo(d) for d in range(1, 6)] == [8, 16, 32, 64, 128]


@pytest.mark.parametrize("depth,size", [(2, 64), (3, 96)])
def test_radius_is_exact_by_perturbing_one_pixel_per_phase(depth, size):
    """A +-100 change of one input pixel (so that it wins the max-pools) changes outputs exactly over
    the interval the trace predicts for its phase, in rows and columns; the widest reach is the radius."""
    model, variables, f = _unet(depth, size=size, seed=depth)
    n = 2**depth
    c = size // 2 - n
    x = np.random.default_rng(depth).standard_normal((1, size, size, 1)).astype(np.float32)
    batch = np.repeat(x, 2 * n + 1, axis=0)
    for k in range(2 * n):
        batch[k, c + k % n, c + k % n, 0] += 100.0 if k < n else -100.0
    y = np.asarray(f(variables, batch))[..., 0]
    reach = 0
    for k in range(2 * n):
        p = c + k % n
        rows, cols = np.nonzero(y[k] != y[-1])
        lo, hi = _trace(depth, p)
        assert (rows.min(), rows.max()) == (lo, hi) and (cols.min(), cols.max()) == (lo, hi)
        reach = max(reach, p - lo, hi - p)
    assert reach == unet_dependency_radius(depth)


@pytest.mark.parametrize("halo,exact", [(20, True), (16, True), (12, False)])
def test_grid_aligned_window_with_the_tile_halo_is_exact(depth2, halo, exact):
    """A window on the pool grid reaching ``halo`` px beyond a 16-px output tile gives the whole-image
    values on the tile when halo >= unet_tile_halo(2) = 16 (the radius 18 rounded up: 20, or exactly
    16), not with 12."""
    _, variables, f = depth2
    x = np.random.default_rng(5).standard_normal((1, 64, 64, 1)).astype(np.float32)
    t0, tile = 24, 16
    ref = np.asarray(f(variables, x))[:, t0:t0 + tile, t0:t0 + tile]
    window = np.ascontiguousarray(x[:, t0 - halo:t0 + tile + halo, t0 - halo:t0 + tile + halo])
    out = np.asarray(f(variables, window))[:, halo:halo + tile, halo:halo + tile]
    assert (halo >= unet_tile_halo(2)) == exact
    if exact:
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    else:
        assert np.max(np.abs(out - ref)) > 1e-5  # the far taps are weak: ~6e-5 here, 0 when exact
