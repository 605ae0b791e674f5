"""Entropy models of the learned codecs (Balle et al. 2018, CompressAI's formulas), channels last.

- :class:`EntropyBottleneck`: a non-parametric factorized density per channel (appendix 6.1 of
  Balle et al. 2018). Parameters (CompressAI's shapes, f = (1, 3, 3, 3, 3, 1)): ``matrix{i}``
  (C, f[i+1], f[i]) and ``bias{i}`` (C, f[i+1], 1) for i in 0..4, ``factor{i}`` (C, f[i+1], 1) for
  i in 0..3, ``quantiles`` (C, 1, 3) (the 1e-9 quantile, the median and the 1 - 1e-9 quantile,
  learnt by :meth:`EntropyBottleneck.aux_loss` only).
- :class:`GaussianConditional`: a zero-mean Gaussian of predicted scale convolved with U(-0.5, 0.5);
  no parameters.
- Quantisation: train mode computes the likelihoods on ``y + u``, u ~ U(-0.5, 0.5), and returns the
  straight-through rounding ``y + stop_gradient(round(y - m) + m - y)`` for the decoder; eval mode
  returns ``round(y - m) + m`` and its likelihoods (m: the stop-gradiented medians, 0 for the
  Gaussian). ``round`` is round-half-to-even.
- The bottleneck's coding table, in numpy float64 from the parameters (deterministic):
  :func:`pmf_table` (CompressAI's ``update()``); the Gaussian's tables are built by
  :func:`sar_jax.codec.tables.gaussian_tables` at :data:`sar_jax.inference.entropy_codec.CODING_SCALES`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import expit

from sar_jax.nn.gdn import lower_bound

FILTERS = (3, 3, 3, 3)
INIT_SCALE = 10.0
LIKELIHOOD_BOUND = 1e-9
TAIL_MASS = 1e-9
SCALE_BOUND = 0.11

_HI = jax.lax.Precision.HIGHEST
_LAYERS = len(FILTERS) + 1


def quantize(y: jax.Array, medians: jax.Array | float, train: bool) -> jax.Array:
    """``round(y - m) + m``; in train mode with the straight-through gradient (identity)."""
    rounded = jnp.round(y - medians) + medians
    return y + jax.lax.stop_gradient(rounded - y) if train else rounded


def uniform_noise(module: nn.Module, shape: tuple[int, ...]) -> jax.Array:
    """U(-0.5, 0.5) of ``shape`` from the module's ``noise`` rng stream."""
    return jax.random.uniform(module.make_rng("noise"), shape, jnp.float32, -0.5, 0.5)


def _to_rows(y: jax.Array) -> jax.Array:
    """(..., C) -> (C, 1, n)."""
    return jnp.moveaxis(y, -1, 0).reshape(y.shape[-1], 1, -1)


def _from_rows(v: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """(C, 1, n) -> (..., C) of ``shape``."""
    return jnp.moveaxis(v.reshape((shape[-1],) + tuple(shape[:-1])), 0, -1)


def _uniform_init(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """U(-0.5, 0.5) (the biases)."""
    return jax.random.uniform(key, shape, jnp.float32, -0.5, 0.5)


def _quantiles_init(_: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """(-10, 0, 10) per channel."""
    return jnp.broadcast_to(jnp.array([-INIT_SCALE, 0.0, INIT_SCALE], jnp.float32), shape)


class EntropyBottleneck(nn.Module):
    """The factorized density over ``channels`` channels: ``apply(..., y, train, noise)`` ->
    ``(y_hat, likelihoods)`` for y (..., C) (see the module docstring); float32."""

    channels: int

    def setup(self) -> None:
        f = (1,) + FILTERS + (1,)
        scale = INIT_SCALE ** (1 / _LAYERS)
        c = self.channels
        self.matrices = [self.param(f"matrix{i}", nn.initializers.constant(math.log(math.expm1(1 / scale / f[i + 1]))),
                                    (c, f[i + 1], f[i]), jnp.float32) for i in range(_LAYERS)]
        self.biases = [self.param(f"bias{i}", _uniform_init, (c, f[i + 1], 1)) for i in range(_LAYERS)]
        self.factors = [self.param(f"factor{i}", nn.initializers.zeros, (c, f[i + 1], 1), jnp.float32)
                        for i in range(_LAYERS - 1)]
        self.quantiles = self.param("quantiles", _quantiles_init, (c, 1, 3))

    def logits_cumulative(self, v: jax.Array, stop_gradient: bool = False) -> jax.Array:
        """The density's cumulative logits at v (C, 1, n); ``stop_gradient`` freezes the density."""
        sg = jax.lax.stop_gradient if stop_gradient else (lambda a: a)
        for i in range(_LAYERS):
            v = jnp.einsum("cij,cjn->cin", jax.nn.softplus(sg(self.matrices[i])), v, precision=_HI) + sg(self.biases[i])
            if i < _LAYERS - 1:
                v = v + jnp.tanh(sg(self.factors[i])) * jnp.tanh(v)
        return v

    def likelihood(self, y: jax.Array) -> jax.Array:
        """P(bin of width 1 centred on y) for y (..., C), lower-bounded at 1e-9."""
        v = _to_rows(y.astype(jnp.float32))
        lower = self.logits_cumulative(v - 0.5)
        upper = self.logits_cumulative(v + 0.5)
        sign = jax.lax.stop_gradient(-jnp.sign(lower + upper))
        lik = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
        return lower_bound(_from_rows(lik, y.shape), LIKELIHOOD_BOUND)

    def medians(self) -> jax.Array:
        """(C,) the learnt medians, stop-gradiented (the main loss never moves the quantiles)."""
        return jax.lax.stop_gradient(self.quantiles[:, 0, 1])

    def aux_loss(self) -> jax.Array:
        """sum |logits_cumulative(quantiles) - (-t, 0, t)|, t = log(2 / 1e-9 - 1), with the density
        frozen: only the quantiles learn from it."""
        t = math.log(2 / TAIL_MASS - 1)
        target = jnp.array([-t, 0.0, t], jnp.float32)
        return jnp.sum(jnp.abs(self.logits_cumulative(self.quantiles, stop_gradient=True) - target))

    def __call__(self, y: jax.Array, train: bool, noise: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        y = y.astype(jnp.float32)
        m = self.medians()
        y_hat = quantize(y, m, train)
        if not train:
            return y_hat, self.likelihood(y_hat)
        return y_hat, self.likelihood(y + (uniform_noise(self, y.shape) if noise is None else noise))


def _phi(t: jax.Array) -> jax.Array:
    return 0.5 * jax.scipy.special.erfc(-t / math.sqrt(2.0))


class GaussianConditional(nn.Module):
    """Zero-mean Gaussian conditional: ``apply(..., y, scales, train, noise)`` -> ``(y_hat,
    likelihoods)``; scales lower-bounded at 0.11, likelihoods at 1e-9; float32, no parameters."""

    def likelihood(self, y: jax.Array, scales: jax.Array) -> jax.Array:
        """Phi((0.5 - |y|) / s) - Phi((-0.5 - |y|) / s), s = lower_bound(scales, 0.11)."""
        s = lower_bound(scales.astype(jnp.float32), SCALE_BOUND)
        a = jnp.abs(y.astype(jnp.float32))
        return lower_bound(_phi((0.5 - a) / s) - _phi((-0.5 - a) / s), LIKELIHOOD_BOUND)

    def __call__(self, y: jax.Array, scales: jax.Array, train: bool,
                 noise: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        y = y.astype(jnp.float32)
        y_hat = quantize(y, 0.0, train)
        if not train:
            return y_hat, self.likelihood(y_hat, scales)
        return y_hat, self.likelihood(y + (uniform_noise(self, y.shape) if noise is None else noise), scales)


class PmfTable(NamedTuple):
    """Per-distribution coding table: symbol s of distribution i is valid when ``offset[i] <= s <
    offset[i] + length[i]``, with probability ``pmf[i, s - offset[i]]`` (float64, zero past
    ``length[i]``); ``tail_mass[i]`` is the probability of all other symbols (pmf row + tail = 1)."""

    offset: np.ndarray
    length: np.ndarray
    pmf: np.ndarray
    tail_mass: np.ndarray


def _logits_cumulative_np(params: Mapping[str, Any], v: np.ndarray) -> np.ndarray:
    """:meth:`EntropyBottleneck.logits_cumulative` in numpy float64 (v (C, 1, n))."""
    for i in range(_LAYERS):
        matrix = np.logaddexp(0.0, np.asarray(params[f"matrix{i}"], np.float64))
        v = np.einsum("cij,cjn->cin", matrix, v) + np.asarray(params[f"bias{i}"], np.float64)
        if i < _LAYERS - 1:
            v = v + np.tanh(np.asarray(params[f"factor{i}"], np.float64)) * np.tanh(v)
    return v


def pmf_table(params: Mapping[str, Any]) -> PmfTable:
    """The coding table of a trained :class:`EntropyBottleneck` from its parameters (the
    ``entropy_bottleneck`` subtree), CompressAI's ``update()``: channel c codes the symbols
    s = round(y - median_c) in [-minima_c, maxima_c], minima = max(ceil(median - quantiles[..., 0]), 0),
    maxima = max(ceil(quantiles[..., 2] - median), 0), with the density's bin probabilities at
    median_c + s (the eval-mode likelihoods, without their lower bound). Unlike CompressAI, each
    channel's upper tail is taken at its own last symbol, so that every row sums to 1 with its tail.
    """
    q = np.asarray(params["quantiles"], np.float64)[:, 0, :]
    medians = q[:, 1]
    minima = np.maximum(np.ceil(medians - q[:, 0]), 0).astype(np.int64)
    maxima = np.maximum(np.ceil(q[:, 2] - medians), 0).astype(np.int64)
    length = minima + maxima + 1
    k = np.arange(int(length.max()))
    samples = (medians[:, None] - minima[:, None] + k[None, :])[:, None, :]
    lower = _logits_cumulative_np(params, samples - 0.5)[:, 0]
    upper = _logits_cumulative_np(params, samples + 0.5)[:, 0]
    sign = -np.sign(lower + upper)
    pmf = np.abs(expit(sign * upper) - expit(sign * lower))
    pmf[k[None, :] >= length[:, None]] = 0.0
    rows = np.arange(len(length))
    tail_mass = expit(lower[:, 0]) + expit(-upper[rows, length - 1])
    return PmfTable(-minima, length, pmf, tail_mass)

