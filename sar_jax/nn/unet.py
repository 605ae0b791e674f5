"""The despeckling U-Net in Flax: the shape MERLIN and SAR2SAR use (the ``deepdespeckling`` project's
``Model``, itself the Noise2Noise U-Net), made residual and of configurable depth.

``depth`` = D max-pools; F = ``features``; every conv is 3x3, stride 1, zero padding 1, with bias::

    enc0 (in -> F), enc1 (F -> F), pool                    skip 1
    enc{l} (F -> F), pool            for l = 2 .. D        skip l (l < D)
    enc{D+1} (F -> F)                                      the bottom, at 1 / 2**D
    up, cat skip, dec{l} (-> 2F), dec{l}b (2F -> 2F)       for l = D .. 2
    up, cat x, dec1a (-> ceil(4F/3)), dec1b (-> ceil(2F/3)), dec1 (-> in_channels, no activation)

Each conv but ``dec1`` is followed by LeakyReLU(0.1) (fixed, as in MERLIN; ``model.negative_slope`` is
the autoencoder's); "up" is nearest-neighbour x2, "pool" a 2x2 max-pool, "cat" concatenates
``(upsampled, skip)`` in that channel order. No BatchNorm, no output squashing: the network predicts
the speckle component in the normalised log domain and ``x_hat = x - net(x)``. At D = 5, F = 48,
one channel it is deepdespeckling's ``Model`` layer for layer (dec1a/dec1b 64/32 wide), with the
same parameter names.

Dependency radius (:func:`unet_dependency_radius`, derived from :func:`unet_layers`): depth 2: 18 px,
3: 38 px, **4 (the default): 78 px**, 5: 158 px (= 5 * 2**D - 2; reached to the right of an input
pixel on phase 0 of the ``2**D`` grid, to the left on phase ``2**D - 1``). An exact halo tiling needs
a halo of at least this, rounded up to ``DOWNSAMPLING`` (80 px at the default depth 4); with tiles and
windows on the ``2**D`` grid :func:`unet_tile_halo` suffices: 2**(D+2) px, **64 px at depth 4** (16,
32, 64, 128 for depth 2 .. 5), the autoencoder's halo.

Parameters: ``enc*/dec*`` ``{kernel (3, 3, in, out), bias (out,)}``, float32 whatever the compute
dtype; initialised as torch's ``Conv2d`` default (uniform, bound ``1 / sqrt(9 * in)``, weight and bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

#: LeakyReLU slope of every hidden conv (MERLIN / SAR2SAR).
LEAKY_SLOPE = 0.1


@dataclass(frozen=True)
class Op:
    """One step of the U-Net: ``conv`` (``name``, ``features`` out, ``act``: LeakyReLU after it),
    ``pool`` (2x2 max), ``up`` (nearest x2), ``save`` (push the current tensor as a skip) or ``cat``
    (pop the last skip and concatenate it after the current tensor's channels). The input is the
    first skip."""

    kind: str
    name: str = ""
    features: int = 0
    act: bool = True


def unet_layers(depth: int, features: int = 48, in_channels: int = 1) -> tuple[Op, ...]:
    """The U-Net as a list of :class:`Op`, in forward order (the module runs exactly this list)."""
    if depth < 1:
        raise ValueError(f"unet depth {depth}: expected >= 1")
    f = features
    ops = [Op("conv", "enc0", f), Op("conv", "enc1", f), Op("pool")]
    for level in range(2, depth + 1):
        ops += [Op("save"), Op("conv", f"enc{level}", f), Op("pool")]
    ops.append(Op("conv", f"enc{depth + 1}", f))
    for level in range(depth, 1, -1):
        ops += [Op("up"), Op("cat"), Op("conv", f"dec{level}", 2 * f), Op("conv", f"dec{level}b", 2 * f)]
    ops += [Op("up"), Op("cat"), Op("conv", "dec1a", -(-4 * f // 3)), Op("conv", "dec1b", -(-2 * f // 3)),
            Op("conv", "dec1", in_channels, act=False)]
    return tuple(ops)


def _trace(depth: int, p: int) -> tuple[int, int]:
    """The output interval ``[lo, hi]`` (1-D, one axis) that input pixel ``p`` can change, through
    :func:`unet_layers` and the residual: conv 3x3 ``x[j] -> y[j-1 .. j+1]``, pool ``x[j] -> y[j // 2]``,
    up ``x[j] -> y[2j], y[2j+1]``, cat: the hull of both operands."""
    lo = hi = p
    skips = [(p, p)]
    for op in unet_layers(depth):
        if op.kind == "conv":
            lo, hi = lo - 1, hi + 1
        elif op.kind == "pool":
            lo, hi = lo // 2, hi // 2
        elif op.kind == "up":
            lo, hi = 2 * lo, 2 * hi + 1
        elif op.kind == "save":
            skips.append((lo, hi))
        else:
            s_lo, s_hi = skips.pop()
            lo, hi = min(lo, s_lo), max(hi, s_hi)
    return min(lo, p), max(hi, p)  # x_hat = x - net(x)


def unet_dependency_radius(depth: int) -> int:
    """Largest distance (px, per axis) between an input pixel and an output pixel it can change, over
    every input phase on the ``2**depth`` grid (the pools make the reach phase-dependent)."""
    return max(max(p - lo, hi - p) for p in range(2**depth) for lo, hi in [_trace(depth, p)])


def unet_tile_halo(depth: int) -> int:
    """Smallest halo (px) that makes tiling exact when output tiles and windows start on the
    ``2**depth`` grid (as the pools need): an input ``k`` px before an aligned tile start has phase
    ``-k`` and must reach the tile; one ``k`` px after an aligned tile end has phase ``k`` and must
    reach back into it. Rounded up to the grid; at most :func:`unet_dependency_radius` rounded up."""
    n = 2**depth
    need = 0
    for q in range(n):
        lo, hi = _trace(depth, q)
        right, left = hi - q, q - lo
        need = max(need, right - (right + q) % n)  # the largest k <= right with k = -q (mod n)
        need = max(need, left - (left - 1 - q) % n)  # 1 + the largest k <= left - 1 with k = q (mod n)
    return -(-need // n) * n


def _uniform(bound: float) -> Any:
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Conv3x3(nn.Module):
    """``Conv2d(k=3, stride=1, padding=1, bias=True)``: kernel ``(3, 3, in, out)`` = ``W.transpose(2, 3, 1, 0)``."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        bound = 1.0 / math.sqrt(9 * x.shape[-1])
        kernel = self.param("kernel", _uniform(bound), (3, 3, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", _uniform(bound), (self.features,), jnp.float32)
        y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=jax.lax.Precision.HIGHEST)
        return y + bias.astype(self.dtype)


class UNet(nn.Module):
    """``apply(variables, x, train=...) -> (x_hat, {})``; x NHWC float32 (normalised log intensity),
    H and W multiples of ``DOWNSAMPLING``; x_hat float32, unbounded. ``train`` changes nothing (no
    BatchNorm, no dropout); the empty dict keeps the trainer's ``(x_hat, aux)`` convention."""

    in_channels: int = 1
    features: int = 48
    depth: int = 4
    dtype: Dtype = jnp.float32

    @property
    def DOWNSAMPLING(self) -> int:  # noqa: N802 (the models' common attribute name)
        """Image sides must be multiples of this (``2**depth``: the pools)."""
        return 2**self.depth

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, dict[str, Any]]:
        x = x.astype(jnp.float32)
        n = x.astype(self.dtype)
        skips = [n]
        for op in unet_layers(self.depth, self.features, self.in_channels):
            if op.kind == "conv":
                n = Conv3x3(op.features, self.dtype, name=op.name)(n)
                n = nn.leaky_relu(n, LEAKY_SLOPE) if op.act else n
            elif op.kind == "pool":
                n = nn.max_pool(n, (2, 2), strides=(2, 2))
            elif op.kind == "up":
                n = jnp.repeat(jnp.repeat(n, 2, axis=1), 2, axis=2)
            elif op.kind == "save":
                skips.append(n)
            else:
                n = jnp.concatenate([n, skips.pop()], axis=-1)
        return x - n.astype(jnp.float32), {}

    @classmethod
    def from_config(cls, model_cfg: dict[str, Any], dtype: Dtype = jnp.float32) -> UNet:
        """Build from a config's ``model`` section (``unet_features``, ``unet_depth``, ``in_channels``)."""
        return cls(in_channels=model_cfg["in_channels"], features=model_cfg["unet_features"],
                   depth=model_cfg["unet_depth"], dtype=dtype)
