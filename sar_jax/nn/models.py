"""The SAR autoencoder in Flax: the reference's layers, widths, BatchNorm, activations and init.

Parameter tree (mirrors ``sar_torch_ref``'s state_dict one to one)::

    encoder/block{0,1,2}/conv/kernel, encoder/block{0,1,2}/bn/{scale,bias}, encoder/final/{kernel,bias}
    decoder/block{0,1,2}/deconv/kernel, decoder/block{0,1,2}/bn/{scale,bias}, decoder/final/{kernel,bias}
    batch_stats: .../bn/{mean,var}
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sar_jax.nn.layers import BatchNorm, StridedConv, TransposedConv

Dtype = Any


class Stride2(nn.Module):
    """The fields of the 5x5 stride-2 modules below: the LeakyReLU slope (also the Kaiming init's ``a``),
    the compute dtype, and strided (encoder) or, with ``transposed``, transposed (decoder) convolutions."""

    negative_slope: float
    dtype: Dtype = jnp.float32
    transposed: bool = False


class Block(Stride2, kw_only=True):
    """A 5x5 stride-2 layer (no bias) + BatchNorm + activation, the reference's two block kinds:
    ``ConvBlock`` (``Conv2d`` + LeakyReLU, parameters under ``conv``) and, with ``transposed``,
    ``DeconvBlock`` (``ConvTranspose2d`` k5 s2 p2 op1 + ReLU, parameters under ``deconv``)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        layer, name = (TransposedConv, "deconv") if self.transposed else (StridedConv, "conv")
        x = layer(self.features, negative_slope=self.negative_slope, dtype=self.dtype, name=name)(x)
        x = BatchNorm(dtype=self.dtype, name="bn")(x, train)
        return nn.relu(x) if self.transposed else nn.leaky_relu(x, self.negative_slope)


class Stack(Stride2, kw_only=True):
    """Three Blocks and a plain 5x5 stride-2 layer with bias: the encoder (b, 2b, 4b channels, then
    a conv to ``out_channels`` latent channels) or, with ``transposed``, the decoder (4b, 2b, b
    channels, then a transposed conv to ``out_channels`` image channels and a sigmoid)."""

    base_channels: int
    out_channels: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b = self.base_channels
        widths = (4 * b, 2 * b, b) if self.transposed else (b, 2 * b, 4 * b)
        for i, width in enumerate(widths):
            x = Block(self.negative_slope, self.dtype, self.transposed, features=width, name=f"block{i}")(x, train)
        final = TransposedConv if self.transposed else StridedConv
        x = final(self.out_channels, use_bias=True, negative_slope=self.negative_slope, dtype=self.dtype,
                  name="final")(x)
        return nn.sigmoid(x.astype(jnp.float32)) if self.transposed else x


class SARAutoencoder(nn.Module):
    """``apply(variables, x, train=...) -> (x_hat, z)``; x NHWC float32 in [0, 1], H and W
    multiples of 16. ``dtype`` is the compute dtype (parameters and BN stats stay float32)."""

    #: Image side / latent side (four stride-2 layers).
    DOWNSAMPLING = 16

    in_channels: int = 1
    base_channels: int = 64
    latent_channels: int = 16
    negative_slope: float = 0.2
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        self.encoder = Stack(self.negative_slope, self.dtype, base_channels=self.base_channels,
                             out_channels=self.latent_channels)
        self.decoder = Stack(self.negative_slope, self.dtype, transposed=True, base_channels=self.base_channels,
                             out_channels=self.in_channels)

    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        z = self.encoder(x, train)
        return self.decoder(z, train), z.astype(jnp.float32)

    def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Image -> latent (float32)."""
        return self.encoder(x, train).astype(jnp.float32)

    def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Latent -> image in [0, 1]."""
        return self.decoder(z, train)

    @classmethod
    def from_config(cls, model_cfg: dict[str, Any], dtype: Dtype = jnp.float32) -> SARAutoencoder:
        """Build from a config's ``model`` section."""
        return cls(in_channels=model_cfg["in_channels"], base_channels=model_cfg["base_channels"],
                   latent_channels=model_cfg["latent_channels"],
                   negative_slope=model_cfg["negative_slope"], dtype=dtype)

