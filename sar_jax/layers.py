"""Flax layers with the reference's exact semantics, computed the way XLA runs fast.

Parameters keep PyTorch's plain 5x5 layout so weight conversion stays a transpose:
- :class:`StridedConv`: ``Conv2d(k=5, s=2, p=2)``; kernel ``(5, 5, in, out)`` = ``W.transpose(2, 3, 1, 0)``.
- :class:`TransposedConv`: ``ConvTranspose2d(k=5, s=2, p=2, output_padding=1)``; kernel
  ``(5, 5, in, out)`` = ``W.transpose(2, 3, 0, 1)`` (torch stores ``(in, out, kh, kw)``).
- :class:`BatchNorm`: ``BatchNorm2d`` (eps 1e-5, running stats updated with the UNBIASED batch
  variance, as torch does; ``flax.linen.BatchNorm`` uses the biased one, hence this module).

Why not ``nn.Conv(strides=2)`` / ``nn.ConvTranspose``: XLA lowers a transposed convolution, and
the input-gradient of a strided one, to lhs-dilated convolutions that run an order of magnitude
slower than stride-1 convolutions on CPU (and are slow on GPU too). Both are rewritten exactly:
- a stride-2 5x5 conv is space-to-depth followed by a stride-1 3x3 conv over 4x the channels
  (kernel zero-padded to 6x6 and regrouped);
- a stride-2 transposed conv produces, per axis, even outputs from taps 4, 2, 0 at input offsets
  -1, 0, +1 and odd outputs from taps 3, 1 at offsets 0, +1: one stride-1 3x3 conv to 4x the
  channels (one group per output phase) followed by depth-to-space.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
_DN = ("NHWC", "HWIO", "NHWC")
# For output phase a (0 even, 1 odd) and input offset d in (-1, 0, +1): the 5-tap index used,
# 5 meaning "no tap" (a zero row appended to the kernel).
_PHASE_TAPS = np.array([[4, 2, 0], [5, 3, 1]])


def kaiming_normal(negative_slope: float, fan_axis: int) -> Callable:
    """torch ``kaiming_normal_(a=negative_slope, mode="fan_out", nonlinearity="leaky_relu")``.

    ``fan_axis`` is the kernel axis holding torch's ``weight.size(0)`` (out channels for
    Conv2d, in channels for ConvTranspose2d), since torch's fan_out is that size times 25.
    """
    gain2 = 2.0 / (1.0 + negative_slope**2)
    mode = "fan_out" if fan_axis == -1 else "fan_in"
    return nn.initializers.variance_scaling(gain2, mode, "normal", in_axis=-2, out_axis=-1)


def space_to_depth(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H/2, W/2, 4C), channel order (row phase, col phase, C)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def depth_to_space(x: jax.Array) -> jax.Array:
    """(N, H, W, 4C) with channel order (row phase, col phase, C) -> (N, 2H, 2W, C)."""
    n, h, w, c4 = x.shape
    c = c4 // 4
    x = x.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, 2 * h, 2 * w, c)


def strided_conv_kernel(kernel: jax.Array) -> jax.Array:
    """(5, 5, I, O) stride-2 kernel -> (3, 3, 4I, O) kernel for the space-to-depth input."""
    i, o = kernel.shape[2:]
    k = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    k = k.reshape(3, 2, 3, 2, i, o).transpose(0, 2, 1, 3, 4, 5)
    return k.reshape(3, 3, 4 * i, o)


def transposed_conv_kernel(kernel: jax.Array) -> jax.Array:
    """(5, 5, I, O) transposed-conv kernel -> (3, 3, I, 4O) phase kernel (phase-major outputs)."""
    i, o = kernel.shape[2:]
    k = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    k = k[_PHASE_TAPS[:, :, None, None], _PHASE_TAPS[None, None, :, :]]  # (a, dy, b, dx, I, O)
    return k.transpose(1, 3, 4, 0, 2, 5).reshape(3, 3, i, 4 * o)


def _conv(x: jax.Array, k: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=_DN)


class StridedConv(nn.Module):
    """``Conv2d(k=5, stride=2, padding=2)`` via space-to-depth + stride-1 3x3 conv."""

    features: int
    use_bias: bool = False
    negative_slope: float = 0.2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", kaiming_normal(self.negative_slope, -1),
                            (5, 5, x.shape[-1], self.features), jnp.float32)
        x = jnp.pad(x.astype(self.dtype), ((0, 0), (2, 2), (2, 2), (0, 0)))
        y = _conv(space_to_depth(x), strided_conv_kernel(kernel).astype(self.dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y


class TransposedConv(nn.Module):
    """``ConvTranspose2d(k=5, stride=2, padding=2, output_padding=1)`` via a stride-1 3x3 conv
    to 4x channels + depth-to-space."""

    features: int
    use_bias: bool = False
    negative_slope: float = 0.2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", kaiming_normal(self.negative_slope, -2),
                            (5, 5, x.shape[-1], self.features), jnp.float32)
        x = jnp.pad(x.astype(self.dtype), ((0, 0), (1, 1), (1, 1), (0, 0)))
        y = depth_to_space(_conv(x, transposed_conv_kernel(kernel).astype(self.dtype)))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y


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
