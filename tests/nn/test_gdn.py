"""GDN / IGDN against the closed formula, lower_bound's gradient rule and the non-negative reparametrisation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from sar_jax.nn.gdn import BETA_MIN, GDN, IGDN, PEDESTAL, lower_bound, reparam, reparam_init


def _effective(stored: np.ndarray, minimum: float) -> np.ndarray:
    s = stored.astype(np.float64)
    return np.maximum(s, math.sqrt(minimum + PEDESTAL)) ** 2 - PEDESTAL


def test_gdn_and_igdn_match_the_formula():
    """norm_c = beta_c + sum_j gamma[c, j] x_j**2; GDN x / sqrt(norm), IGDN x * sqrt(norm), with the
    effective beta/gamma of random (partly negative, partly below the bound) stored parameters."""
    rng = np.random.default_rng(0)
    c = 5
    x = rng.normal(size=(2, 3, 4, c)).astype(np.float32) * 2
    params = {"beta": rng.normal(1.0, 0.8, size=c).astype(np.float32),
              "gamma": rng.normal(0.1, 0.3, size=(c, c)).astype(np.float32)}
    beta, gamma = _effective(params["beta"], BETA_MIN), _effective(params["gamma"], 0.0)
    norm = beta + np.einsum("nhwj,cj->nhwc", x.astype(np.float64) ** 2, gamma)
    y = GDN().apply({"params": params}, jnp.asarray(x))
    y_inv = IGDN().apply({"params": params}, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), x / np.sqrt(norm), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(y_inv), x * np.sqrt(norm), rtol=2e-6, atol=1e-7)
    # IGDN(GDN(x)) is not x (the norm is taken of different inputs) but follows both formulas
    g = np.asarray(y, np.float64)
    round_trip = IGDN().apply({"params": params}, y)
    np.testing.assert_allclose(np.asarray(round_trip), g * np.sqrt(beta + np.einsum("nhwj,cj->nhwc", g**2, gamma)),
                               rtol=2e-6, atol=1e-7)
    assert np.abs(np.asarray(round_trip) - x).max() > 0.1


def test_init_is_beta_one_gamma_tenth_identity():
    variables = GDN().init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 4)))
    p = variables["params"]
    assert set(variables) == {"params"} and p["beta"].shape == (4,) and p["gamma"].shape == (4, 4)
    np.testing.assert_allclose(np.asarray(reparam(p["beta"], BETA_MIN)), np.ones(4), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(reparam(p["gamma"], 0.0)), 0.1 * np.eye(4), atol=1e-7)
    np.testing.assert_array_equal(np.asarray(p["gamma"]), np.asarray(reparam_init(0.1 * jnp.eye(4))))


def test_lower_bound_forward_and_gradient_rule():
    """max(x, bound); the gradient is 0 below the bound when the incoming gradient is positive and
    passes when it is negative (or at/above the bound)."""
    x = jnp.array([-1.0, 0.5, 1.0, 2.0])
    y, vjp = jax.vjp(lambda a: lower_bound(a, 1.0), x)
    np.testing.assert_array_equal(np.asarray(y), [1.0, 1.0, 1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(vjp(jnp.full(4, 3.0))[0]), [0.0, 0.0, 3.0, 3.0])
    np.testing.assert_array_equal(np.asarray(vjp(jnp.full(4, -3.0))[0]), [-3.0, -3.0, -3.0, -3.0])
    np.testing.assert_array_equal(np.asarray(vjp(jnp.array([2.0, -2.0, 2.0, -2.0]))[0]), [0.0, -2.0, 2.0, -2.0])


def test_reparametrisation_keeps_beta_and_gamma_in_range():
    """Whatever the raw stored values: effective beta >= 1e-6, gamma >= 0, equal to the formula; the
    gradient of a stored value above the bound is d(s**2)/ds = 2s."""
    raw = jnp.asarray(np.random.default_rng(1).normal(0.0, 3.0, size=2000).astype(np.float32))
    beta, gamma = np.asarray(reparam(raw, BETA_MIN)), np.asarray(reparam(raw, 0.0))
    assert beta.min() >= BETA_MIN and gamma.min() >= 0.0
    assert (beta == np.float32(BETA_MIN)).sum() > 500  # about half the raw values are below the bound
    np.testing.assert_allclose(beta, _effective(np.asarray(raw), BETA_MIN), rtol=1e-6, atol=1e-12)
    grad = np.asarray(jax.grad(lambda s: reparam(s, BETA_MIN).sum())(raw))
    above = np.asarray(raw) >= math.sqrt(BETA_MIN + PEDESTAL)
    np.testing.assert_allclose(grad[above], 2 * np.asarray(raw)[above], rtol=1e-6)
    np.testing.assert_array_equal(grad[~above], 0.0)
    # effective init values come back from reparam_init
    v = jnp.array([0.0, 1e-3, 0.5, 2.0])
    np.testing.assert_allclose(np.asarray(reparam(reparam_init(v), 0.0)), np.asarray(v), atol=1e-7)
