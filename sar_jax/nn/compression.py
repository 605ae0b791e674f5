"""The learned codecs in Flax: bmshj2018-factorized and bmshj2018-hyperprior (Balle et al. 2018,
CompressAI's shapes), the layout of ``sar_torch_ref``'s twins.

Parameter tree (all convolutions with bias; no BatchNorm, variables are ``params`` only)::

    g_a/conv{0..3}/{kernel,bias}, g_a/gdn{0..2}/{beta,gamma}
    g_s/deconv{0..3}/{kernel,bias}, g_s/igdn{0..2}/{beta,gamma}
    h_a/conv{0,1,2}/..., h_s/deconv{0,1}/..., h_s/conv2/...                 (hyperprior only)
    entropy_bottleneck/{matrix0..4,bias0..4,factor0..3,quantiles}          (on y: M channels; on z: N)

``apply({"params": p}, x, train=..., noise=None | {"y": u_y[, "z": u_z]}, rngs={"noise": key})`` ->
``(x_hat, {"y": lik_y[, "z": lik_z]})``: x NHWC float32 in [0, 1] with sides multiples of
``DOWNSAMPLING``, x_hat unbounded float32. Train mode draws the U(-0.5, 0.5) noise from the ``noise``
rng unless ``noise`` gives it (quantisation rules: :mod:`sar_jax.nn.entropy`).
Rate in bits per input pixel = sum over the likelihood arrays of sum(-log2 lik) / (n H W).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sar_jax.core.errors import SarJaxError
from sar_jax.nn.entropy import EntropyBottleneck, GaussianConditional
from sar_jax.nn.gdn import GDN, IGDN
from sar_jax.nn.layers import StridedConv, TransposedConv

Dtype = Any

# Kaiming normal with a = sqrt(5): the variance of torch's default conv init, 1 / (3 fan).
_SLOPE = math.sqrt(5.0)


class Conv3x3(nn.Module):
    """``Conv2d(k=3, s=1, p=1)`` with bias; kernel ``(3, 3, in, out)`` = ``W.transpose(2, 3, 1, 0)``;
    torch's default init (kernel and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        bound = 1.0 / math.sqrt(9 * x.shape[-1])
        init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
        kernel = self.param("kernel", init, (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", init, (self.features,))
        y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias.astype(self.dtype)


class Analysis(nn.Module):
    """g_a: four 5x5 stride-2 convs (-> N, N, N, M) with GDN between them."""

    N: int
    M: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate((self.N, self.N, self.N, self.M)):
            x = StridedConv(width, use_bias=True, negative_slope=_SLOPE, dtype=self.dtype, name=f"conv{i}")(x)
            if i < 3:
                x = GDN(name=f"gdn{i}")(x)
        return x.astype(jnp.float32)


class Synthesis(nn.Module):
    """g_s: four 5x5 stride-2 transposed convs (-> N, N, N, out_channels) with IGDN between them."""

    N: int
    out_channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        for i, width in enumerate((self.N, self.N, self.N, self.out_channels)):
            y = TransposedConv(width, use_bias=True, negative_slope=_SLOPE, dtype=self.dtype, name=f"deconv{i}")(y)
            if i < 3:
                y = IGDN(name=f"igdn{i}")(y)
        return y.astype(jnp.float32)


class HyperAnalysis(nn.Module):
    """h_a on |y|: 3x3 conv (M -> N), ReLU, 5x5 s2 conv, ReLU, 5x5 s2 conv."""

    N: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        z = nn.relu(Conv3x3(self.N, self.dtype, name="conv0")(jnp.abs(y)))
        z = nn.relu(StridedConv(self.N, use_bias=True, negative_slope=_SLOPE, dtype=self.dtype, name="conv1")(z))
        return StridedConv(self.N, use_bias=True, negative_slope=_SLOPE, dtype=self.dtype, name="conv2")(z).astype(
            jnp.float32)


class HyperSynthesis(nn.Module):
    """h_s: 5x5 s2 transposed conv, ReLU, 5x5 s2 transposed conv, ReLU, 3x3 conv (N -> M), ReLU: the scales."""

    N: int
    M: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        for i in range(2):
            z = nn.relu(TransposedConv(self.N, use_bias=True, negative_slope=_SLOPE, dtype=self.dtype,
                                       name=f"deconv{i}")(z))
        return nn.relu(Conv3x3(self.M, self.dtype, name="conv2")(z)).astype(jnp.float32)


def _noise(noise: dict[str, jax.Array] | None, key: str, shape: tuple[int, ...]) -> jax.Array | None:
    """``noise[key]`` checked against the latent's shape (None: draw it from the rng)."""
    if noise is None:
        return None
    u = noise.get(key)
    if u is None or tuple(u.shape) != tuple(shape):
        got = "missing" if u is None else f"shape {tuple(u.shape)}"
        raise SarJaxError(f"noise[{key!r}]: expected an array of shape {tuple(shape)}, got {got}")
    return jnp.asarray(u, jnp.float32)


class _Codec(nn.Module):
    """Fields, input check, g_a / g_s and the aux loss shared by the two codecs."""

    DOWNSAMPLING = 16

    in_channels: int = 1
    N: int = 128
    M: int = 192
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        self.g_a = Analysis(self.N, self.M, self.dtype)
        self.g_s = Synthesis(self.N, self.in_channels, self.dtype)

    def _check(self, x: jax.Array) -> None:
        d = self.DOWNSAMPLING
        if x.ndim != 4 or x.shape[-1] != self.in_channels or x.shape[1] % d or x.shape[2] % d:
            raise SarJaxError(f"{type(self).__name__}: expected NHWC images with {self.in_channels} channel(s) and "
                              f"sides multiples of {d}, got shape {tuple(x.shape)}")

    def analysis(self, x: jax.Array) -> jax.Array:
        """g_a: image (n, H, W, C) -> y (n, H/16, W/16, M), float32."""
        return self.g_a(x)

    def synthesis(self, y_hat: jax.Array) -> jax.Array:
        """g_s: quantised y -> x_hat (unbounded), float32."""
        return self.g_s(y_hat)

    def aux_loss(self) -> jax.Array:
        """The entropy bottleneck's quantile loss (gradients reach only its quantiles)."""
        return self.entropy_bottleneck.aux_loss()

    @classmethod
    def from_config(cls, model_cfg: dict[str, Any], dtype: Dtype = jnp.float32) -> _Codec:
        """Build from a config's ``model`` section (``in_channels``, ``N``, ``M``)."""
        return cls(in_channels=model_cfg["in_channels"], N=model_cfg["N"], M=model_cfg["M"], dtype=dtype)


class FactorizedPrior(_Codec):
    """bmshj2018-factorized: y = g_a(x), a factorized density on y (M channels), x_hat = g_s(y_hat)."""

    DOWNSAMPLING = 16

    def setup(self) -> None:
        super().setup()
        self.entropy_bottleneck = EntropyBottleneck(self.M)

    def __call__(self, x: jax.Array, train: bool = False,
                 noise: dict[str, jax.Array] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        self._check(x)
        y = self.analysis(x)
        y_hat, lik_y = self.entropy_bottleneck(y, train, _noise(noise, "y", y.shape) if train else None)
        return self.synthesis(y_hat), {"y": lik_y}


class ScaleHyperprior(_Codec):
    """bmshj2018-hyperprior: z = h_a(|y|) with a factorized density (N channels), scales = h_s(z_hat),
    y ~ Gaussian(0, scales) convolved with U(-0.5, 0.5)."""

    DOWNSAMPLING = 64

    def setup(self) -> None:
        super().setup()
        self.h_a = HyperAnalysis(self.N, self.dtype)
        self.h_s = HyperSynthesis(self.N, self.M, self.dtype)
        self.entropy_bottleneck = EntropyBottleneck(self.N)
        self.gaussian_conditional = GaussianConditional()

    def hyper_analysis(self, y: jax.Array) -> jax.Array:
        """h_a(|y|): y (n, h, w, M) -> z (n, h/4, w/4, N), float32."""
        return self.h_a(y)

    def hyper_synthesis(self, z_hat: jax.Array) -> jax.Array:
        """h_s: quantised z -> the Gaussian scales of y (>= 0; the likelihood bounds them at 0.11), float32."""
        return self.h_s(z_hat)

    def __call__(self, x: jax.Array, train: bool = False,
                 noise: dict[str, jax.Array] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        self._check(x)
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_hat, lik_z = self.entropy_bottleneck(z, train, _noise(noise, "z", z.shape) if train else None)
        y_hat, lik_y = self.gaussian_conditional(y, self.hyper_synthesis(z_hat), train,
                                                 _noise(noise, "y", y.shape) if train else None)
        return self.synthesis(y_hat), {"y": lik_y, "z": lik_z}
