"""The entropy models: the factorized density's CDF and normalisation, quantisation, the coding tables,
the Gaussian conditional against scipy and the scale-table indexes."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from sar_jax.nn.entropy import (
    EntropyBottleneck,
    GaussianConditional,
    pmf_table,
)

C = 3
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
EB = EntropyBottleneck(C)
GC = GaussianConditional()


@pytest.fixture(scope="module")
def init_params():
    return EB.init(jax.random.key(0, impl="rbg"), jnp.zeros((1, 2, 2, C)), train=False)["params"]


@pytest.fixture(scope="module")
def params(init_params):
    """Random density parameters (perturbed init, non-zero tanh factors) and spread quantiles."""
    rng = np.random.default_rng(1)
    p = {k: v if k == "quantiles" else v + np.float32(0.3) * rng.normal(size=v.shape).astype(np.float32)
         for k, v in init_params.items()}
    p["quantiles"] = jnp.array([[[-30.2, 0.3, 25.6]], [[-12.0, -4.7, 8.1]], [[-3.3, 1.5, 2.0]]], jnp.float32)
    return {"params": p}


@partial(jax.jit, compiler_options=FAST_COMPILE)
def _likelihood(variables, y):
    return EB.apply(variables, y, method=EntropyBottleneck.likelihood)


@partial(jax.jit, static_argnums=2, compiler_options=FAST_COMPILE)
def _forward(variables, y, train, noise=None):
    return EB.apply(variables, y, train, noise)


def test_param_shapes_and_init(init_params):
    p = init_params
    f = (1, 3, 3, 3, 3, 1)
    expected = {f"matrix{i}": (C, f[i + 1], f[i]) for i in range(5)}
    expected |= {f"bias{i}": (C, f[i + 1], 1) for i in range(5)}
    expected |= {f"factor{i}": (C, f[i + 1], 1) for i in range(4)}
    expected["quantiles"] = (C, 1, 3)
    assert {k: v.shape for k, v in p.items()} == expected
    scale = 10.0 ** 0.2
    for i in range(5):
        np.testing.assert_allclose(np.asarray(p[f"matrix{i}"]), np.log(np.expm1(1 / scale / f[i + 1])), rtol=1e-6)
        b = np.asarray(p[f"bias{i}"])
        assert b.min() >= -0.5 and b.max() <= 0.5 and b.std() > 0.05
    assert all(np.all(np.asarray(p[f"factor{i}"]) == 0) for i in range(4))
    np.testing.assert_array_equal(np.asarray(p["quantiles"]), np.tile([-10.0, 0.0, 10.0], (C, 1, 1)))


def test_cdf_is_monotone_from_0_to_1(params):
    v = jnp.broadcast_to(jnp.linspace(-600.0, 600.0, 4801), (C, 1, 4801))
    cdf = np.asarray(jax.nn.sigmoid(EB.apply(params, v, method=EntropyBottleneck.logits_cumulative)))[:, 0]
    assert np.all(np.diff(cdf, axis=1) >= 0)
    assert np.all(cdf[:, 0] < 1e-9) and np.all(cdf[:, -1] > 1 - 1e-7)
    assert np.all(np.diff(cdf, axis=1).max(axis=1) > 1e-3)  # not flat: the mass is in the range


def test_integer_likelihoods_sum_to_one(params):
    """Over a wide integer range each channel's likelihoods (lower bound included) sum to 1."""
    k = np.arange(-300, 301, dtype=np.float32)
    y = jnp.asarray(np.broadcast_to(k[:, None], (k.size, C)))
    lik = np.asarray(_likelihood(params, y), np.float64)
    assert lik.shape == (k.size, C) and lik.min() >= np.float32(1e-9)
    np.testing.assert_allclose(lik.sum(axis=0), 1.0, atol=1e-6)


def test_quantisation_train_and_eval(params):
    rng = np.random.default_rng(2)
    y = jnp.asarray(rng.normal(0.0, 5.0, size=(2, 4, 4, C)).astype(np.float32))
    m = np.asarray(params["params"]["quantiles"])[:, 0, 1]
    y_hat, lik = _forward(params, y, False)
    s = np.asarray(y_hat) - m
    np.testing.assert_allclose(s, np.round(s), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(y_hat), np.asarray(jnp.round(y - m) + m))
    np.testing.assert_array_equal(np.asarray(lik), np.asarray(_likelihood(params, y_hat)))
    u = jnp.asarray(rng.uniform(-0.5, 0.5, size=y.shape).astype(np.float32))
    y_ste, lik_u = _forward(params, y, True, u)
    np.testing.assert_array_equal(np.asarray(y_ste), np.asarray(y_hat))
    np.testing.assert_array_equal(np.asarray(lik_u), np.asarray(_likelihood(params, y + u)))
    # straight-through: d y_hat / d y = 1
    g = jax.jit(jax.grad(lambda a: EB.apply(params, a, True, u)[0].sum()), compiler_options=FAST_COMPILE)(y)
    np.testing.assert_array_equal(np.asarray(g), 1.0)


def test_pmf_table_matches_the_density(params):
    """Ranges from the quantiles, rows + tail = 1, and entries equal to the eval-mode likelihoods at
    median + s."""
    table = pmf_table(jax.tree_util.tree_map(np.asarray, params["params"]))
    q = np.asarray(params["params"]["quantiles"], np.float64)[:, 0]
    np.testing.assert_array_equal(table.offset, -np.ceil(q[:, 1] - q[:, 0]))
    np.testing.assert_array_equal(table.length, np.ceil(q[:, 1] - q[:, 0]) + np.ceil(q[:, 2] - q[:, 1]) + 1)
    assert table.pmf.dtype == np.float64 and table.pmf.shape == (C, table.length.max())
    np.testing.assert_allclose(table.pmf.sum(axis=1) + table.tail_mass, 1.0, atol=1e-12)
    k = np.arange(table.length.max())
    y = (q[:, 1] + table.offset + k[:, None]).astype(np.float32)  # (L, C): median_c + s
    lik = np.asarray(_likelihood(params, jnp.asarray(y))).T
    valid = k[None, :] < table.length[:, None]
    assert np.all(table.pmf[~valid] == 0)
    np.testing.assert_allclose(table.pmf[valid], lik[valid], rtol=2e-4, atol=1e-7)
    again = pmf_table(jax.tree_util.tree_map(np.asarray, params["params"]))
    assert all(np.array_equal(a, b) for a, b in zip(table, again))


def test_gaussian_likelihoods_match_scipy():
    k = np.arange(-2000, 2001, dtype=np.float32)
    scales = np.array([0.01, 0.11, 0.5, 3.0, 40.0, 300.0], np.float32)
    y = jnp.asarray(np.broadcast_to(k[:, None], (k.size, scales.size)))
    lik = GC.apply({}, y, jnp.asarray(np.broadcast_to(scales, y.shape)), method=GaussianConditional.likelihood)
    lik = np.asarray(lik, np.float64)
    s = np.maximum(scales.astype(np.float64), 0.11)
    expected = np.maximum(norm.cdf((k[:, None] + 0.5) / s) - norm.cdf((k[:, None] - 0.5) / s), 1e-9)
    np.testing.assert_allclose(lik, expected, rtol=1e-4, atol=1e-7)
    for j, sj in enumerate(s):  # each scale over +-(its 1e-9 quantile + 1): the floored bins add nothing
        inside = np.abs(k) <= np.ceil(6.2 * sj) + 1
        np.testing.assert_allclose(lik[inside, j].sum(), 1.0, atol=1e-6)
    # quantisation: eval rounds (means 0), train adds the given noise
    yv = jnp.array([[-1.5, -0.4, 0.5, 2.6]])
    sv = jnp.ones_like(yv)
    y_hat, lik_e = GC.apply({}, yv, sv, False)
    np.testing.assert_array_equal(np.asarray(y_hat), [[-2.0, -0.0, 0.0, 3.0]])
    u = jnp.array([[0.1, -0.2, 0.3, -0.4]])
    y_ste, lik_t = GC.apply({}, yv, sv, True, u)
    np.testing.assert_array_equal(np.asarray(y_ste), np.asarray(y_hat))
    t = np.asarray(yv + u)
    np.testing.assert_allclose(np.asarray(lik_t), norm.cdf(t + 0.5) - norm.cdf(t - 0.5), rtol=1e-5)


