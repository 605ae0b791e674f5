"""Flax layers with the reference's exact semantics.

Parameters keep PyTorch's plain 5x5 layout so weight conversion stays a transpose:
- :class:`StridedConv`: ``Conv2d(k=5, s=2, p=2)``; kernel ``(5, 5, in, out)`` = ``W.transpose(2, 3, 1, 0)``.
- :class:`TransposedConv`: ``ConvTranspose2d(k=5, s=2, p=2, output_padding=1)``; kernel
  ``(5, 5, in, out)`` = ``W.transpose(2, 3, 0, 1)`` (torch stores ``(in, out, kh, kw)``).
- :class:`BatchNorm`: ``BatchNorm2d`` (eps 1e-5, running stats updated with the UNBIASED batch
  variance, as torch does; ``flax.linen.BatchNorm`` uses the biased one, hence this module).

The convolutions are computed by :mod:`sar_jax.ops.conv` (exact reformulations with custom
VJPs that XLA runs fast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sar_jax.ops.conv import strided_conv, transposed_conv

Dtype = Any


def kaiming_normal(negative_slope: float, fan_axis: int) -> Callable:
    """torch ``kaiming_normal_(a=negative_slope, mode="fan_out", nonlinearity="leaky_relu")``.

    ``fan_axis`` is the kernel axis holding torch's ``weight.size(0)`` (out channels for
    Conv2d, in channels for ConvTranspose2d), since torch's fan_out is that size times 25.
    """
    gain2 = 2.0 / (1.0 + negative_slope**2)
    mode = "fan_out" if fan_axis == -1 else "fan_in"
    return nn.initializers.variance_scaling(gain2, mode, "normal", in_axis=-2, out_axis=-1)


class _Conv5x5(nn.Module):
    """A 5x5 stride-2 convolution layer: kernel ``(5, 5, in, out)`` + optional bias, applied
    by ``_op`` with the torch init for ``_fan_axis`` (subclasses set both)."""

    features: int
    use_bias: bool = False
    negative_slope: float = 0.2
    dtype: Dtype = jnp.float32
    _fan_axis = -1

    @staticmethod
    def _op(x: jax.Array, kernel: jax.Array) -> jax.Array:
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", kaiming_normal(self.negative_slope, self._fan_axis),
                            (5, 5, x.shape[-1], self.features), jnp.float32)
        y = self._op(x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y


class StridedConv(_Conv5x5):
    """``Conv2d(k=5, stride=2, padding=2)`` (:func:`strided_conv`)."""

    _fan_axis = -1
    _op = staticmethod(strided_conv)


class TransposedConv(_Conv5x5):
    """``ConvTranspose2d(k=5, stride=2, padding=2, output_padding=1)`` (:func:`transposed_conv`)."""

    _fan_axis = -2
    _op = staticmethod(transposed_conv)


class BatchNorm(nn.Module):
    """``BatchNorm2d`` with torch's semantics: normalise with the biased batch variance, update
    running stats with the unbiased one; Flax momentum 0.9 == torch momentum 0.1.

    Statistics are computed in float32 whatever the compute dtype; under ``jax.jit`` with a
    batch sharded over devices the means are global (over the whole batch).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if train:
            xf = x.astype(jnp.float32)
            mean = jnp.mean(xf, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(xf - mean), axis=(0, 1, 2))
            if not self.is_initializing():
                n = x.size // c
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
                ra_var.value = m * ra_var.value + (1.0 - m) * var * (n / max(n - 1, 1))
        else:
            mean, var = ra_mean.value, ra_var.value
        mul = scale * jax.lax.rsqrt(var + self.epsilon)
        return (x * mul.astype(self.dtype) + (bias - mean * mul).astype(self.dtype)).astype(self.dtype)
