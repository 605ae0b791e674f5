"""The exact convolution arithmetic under :mod:`sar_jax.nn.layers`, with custom VJPs.

- :func:`strided_conv`: ``Conv2d(k=5, s=2, p=2)``; :func:`transposed_conv`:
  ``ConvTranspose2d(k=5, s=2, p=2, output_padding=1)``; NHWC inputs, ``(5, 5, I, O)`` kernels.

Why not XLA's own ops (measurements: ``benchmarks/results/ANALYSIS.md``, reproduced by
``benchmarks/layer_profile.py``): on XLA:CPU the plain stride-2 convolution ``S`` and its kernel
gradient ``W`` are fast, but XLA's transposed convolution and the input gradient of a strided one
are lhs-dilated convolutions, and the kernel gradient of a transposed one is pathological.
So a transposed convolution ``T`` is computed exactly from stride-1 convs that produce the four
output phases (per axis, even outputs take taps 4, 2, 0 at input offsets -1, 0, +1, odd outputs
taps 3, 1 at offsets 0, +1): with >= 128 output channels one conv per phase (3x3, 3x2, 2x3, 2x2),
else a 3x3 conv for the even output rows and a 2x3 conv for the odd ones, each to 2x the channels
(both column phases), then interleaved; with few output channels (the decoder's last layer,
64 -> 1) T is one matmul to the 25 taps followed by shifted sums instead.

The two layers are adjoint to each other, so each gets a ``jax.custom_vjp`` built from these three
fast pieces only: ``strided_conv`` = S forward, T for the input gradient, W for the kernel
gradient; ``transposed_conv`` = T forward, S for the input gradient, W (roles swapped) for the
kernel gradient. All are exact reformulations (no approximation).

On CPU every one of these convolutions is per sample, so each runs over chunks of the batch of at
most :data:`CPU_CONV_CHUNK_ELEMENTS` activation elements (the kernel gradient summing its chunks):
one whole-batch XLA:CPU convolution maps fresh scratch memory every call and streams its
activations through memory. GPUs and multi-device runs take the whole batch
(:func:`sar_jax.ops.micro_batches.micro_batch_size`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from sar_jax.ops.micro_batches import map_in_chunks, micro_batch_size

_DN = ("NHWC", "HWIO", "NHWC")
# For output phase a (0 even, 1 odd): the (input offset, 5-tap index) pairs it uses.
_OFFSET_TAPS = (((-1, 4), (0, 2), (1, 0)), ((0, 3), (1, 1)))
# Up to this many output channels a transposed conv is one matmul + shifted sums.
_FEW_CHANNELS = 4
# From this many output channels a transposed conv is four exact phase convs (fewer: two convs
# to 2x the channels, faster for narrow layers on CPU).
_PHASE_CONV_MIN_CHANNELS = 128
#: Activation elements per batch chunk of a convolution on CPU (two 128x128x64 maps).
CPU_CONV_CHUNK_ELEMENTS = 2 * 128 * 128 * 64


def transposed_conv_kernel(kernel: jax.Array) -> jax.Array:
    """(5, 5, I, O) transposed-conv kernel -> (3, 3, I, 2, 2, O) phase kernels: input offset
    (dy, dx), I, output row phase, column phase, O."""
    k = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    # per axis, phase 0 takes taps 4, 2, 0 and phase 1 taps 5 (zero), 3, 1: static reversed
    # strided slices (an XLA gather here is slow on CPU)
    k = jnp.stack([k[4::-2], k[5::-2]])  # (a, dy, 6, I, O)
    k = jnp.stack([k[:, :, 4::-2], k[:, :, 5::-2]], axis=2)  # (a, dy, b, dx, I, O)
    return k.transpose(1, 3, 4, 0, 2, 5)


def _strided(x: jax.Array, k: jax.Array) -> jax.Array:
    """S: ``Conv2d(k=5, stride=2, padding=2)``, (N, H, W, I) x (5, 5, I, O) -> (N, ceil(H/2), ceil(W/2), O)."""
    return jax.lax.conv_general_dilated(x, k, (2, 2), ((2, 2), (2, 2)), dimension_numbers=_DN)


# Per axis, even outputs use input offsets -1, 0, +1 (3 taps, padding 1 before), odd ones 0, +1.
_PHASE_TAPS, _PHASE_PADS = (slice(0, 3), slice(1, 3)), ((1, 1), (0, 1))


def _transposed_weights(k: jax.Array) -> tuple[jax.Array, ...]:
    """T: ``ConvTranspose2d(k=5, stride=2, padding=2, output_padding=1)`` with a (5, 5, I, O)
    kernel runs as stride-1 convs producing the output phases, interleaved
    (:func:`_transposed_apply`); this is its kernel rearranged for them, once, outside any loop
    over chunks. 1 array: an (I, 25 O) matrix (few outputs); 2: even/odd row-phase kernels to
    2O channels; 4: one exact kernel per output phase (3x3, 3x2, 2x3, 2x2)."""
    c, o = k.shape[2:]
    if o <= _FEW_CHANNELS:
        return (k.transpose(2, 0, 1, 3).reshape(c, 25 * o),)
    kk = transposed_conv_kernel(k)  # (dy, dx, I, row phase, col phase, O)
    if o >= _PHASE_CONV_MIN_CHANNELS:
        return tuple(kk[_PHASE_TAPS[a], _PHASE_TAPS[b], :, a, b] for a in (0, 1) for b in (0, 1))
    # narrower: per row phase one conv to both column phases (2O channels; 1/6 zero taps), as
    # convs to O < 128 channels run far below the machine's speed
    return kk[:, :, :, 0].reshape(3, 3, c, 2 * o), kk[1:, :, :, 1].reshape(2, 3, c, 2 * o)


def _transposed_apply(x: jax.Array, kernels: tuple[jax.Array, ...]) -> jax.Array:
    """T of ``x`` with :func:`_transposed_weights`' arrays."""
    if len(kernels) == 1:
        return _transposed_few_outputs(x, kernels[0])
    n, h, w, _ = x.shape
    if len(kernels) == 4:
        phases = [[jax.lax.conv_general_dilated(x, kernels[2 * a + b], (1, 1), (_PHASE_PADS[a], _PHASE_PADS[b]),
                                                dimension_numbers=_DN) for b in (0, 1)] for a in (0, 1)]
        y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # (N, h, a, w, b, O)
        return y.reshape(n, 2 * h, 2 * w, -1)
    o = kernels[0].shape[-1] // 2
    even = jax.lax.conv_general_dilated(x, kernels[0], (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
    odd = jax.lax.conv_general_dilated(x, kernels[1], (1, 1), ((0, 1), (1, 1)), dimension_numbers=_DN)
    y = jnp.stack([even.reshape(n, h, w, 2, o), odd.reshape(n, h, w, 2, o)], axis=2)  # (N, h, a, w, b, O)
    return y.reshape(n, 2 * h, 2 * w, o)


def _transposed_few_outputs(x: jax.Array, kmat: jax.Array) -> jax.Array:
    """T for few output channels (the decoder's last layer), where a conv to 4O channels runs
    at a few % of the machine's speed: one matmul with ``kmat`` (I, 25 O) gives every input
    pixel's contribution to each of the 25 taps, ``P`` (N, h, w, 5, 5, O); output phase (a, b)
    then sums the shifted planes of its taps (per axis, even outputs taps 4, 2, 0 at input
    offsets -1, 0, +1, odd outputs taps 3, 1 at offsets 0, +1). Sums in float32 whatever the
    compute dtype."""
    n, h, w, c = x.shape
    o = kmat.shape[-1] // 25
    p = jnp.dot(x.reshape(-1, c), kmat, preferred_element_type=jnp.float32).reshape(n, h, w, 5, 5, o)
    p = jnp.pad(p, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))
    phases = []
    for a in (0, 1):
        for b in (0, 1):
            terms = [p[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w, ty, tx]
                     for dy, ty in _OFFSET_TAPS[a] for dx, tx in _OFFSET_TAPS[b]]
            phases.append(sum(terms[1:], terms[0]))
    y = jnp.stack(phases, axis=3).reshape(n, h, w, 2, 2, o)  # (row phase, col phase)
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, o).astype(x.dtype)


def _strided_kernel_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
    """W: d<S(x, k), dy>/dk, (5, 5, I, O): the convolution XLA itself derives for S's kernel
    gradient (the batch as the contracted feature, dy as an rhs-dilated window), written out
    in the canonical NHWC/HWIO form XLA lowers it to, so that it also runs as a fast YNNPACK
    conv inside a loop body (where XLA leaves a non-canonical one to its slow generic emitter)."""
    (h, w), (ho, wo) = x.shape[1:3], dy.shape[1:3]
    pad = ((2, 2 * ho + 1 - h), (2, 2 * wo + 1 - w))  # input rows 2y + ky - 2, ky < 5
    g = jax.lax.conv_general_dilated(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1), pad,
                                     rhs_dilation=(2, 2), dimension_numbers=_DN)  # (I, 5, 5, O)
    return g.transpose(1, 2, 0, 3)


def _chunk(x: jax.Array, y_shape: tuple[int, ...]) -> int:
    """Samples per chunk for a convolution from ``x`` to an output of ``y_shape``."""
    per_sample = max(math.prod(x.shape[1:]), math.prod(y_shape[1:]))
    return micro_batch_size(x.shape[0], per_sample, CPU_CONV_CHUNK_ELEMENTS)


def _kernel_grad(x: jax.Array, dy: jax.Array, chunk: int, kernel_dtype: Any) -> jax.Array:
    """:func:`_strided_kernel_grad` summed (in float32) over chunks of ``chunk`` samples."""
    n = x.shape[0]
    if chunk >= n:
        return _strided_kernel_grad(x, dy).astype(kernel_dtype)
    whole = n - n % chunk

    def add(acc, xd):
        return acc + _strided_kernel_grad(*xd).astype(jnp.float32), None

    chunks = (x[:whole].reshape(-1, chunk, *x.shape[1:]), dy[:whole].reshape(-1, chunk, *dy.shape[1:]))
    g = jax.lax.scan(add, jnp.zeros((5, 5, x.shape[-1], dy.shape[-1]), jnp.float32), chunks)[0]
    if whole < n:
        g = g + _strided_kernel_grad(x[whole:], dy[whole:]).astype(jnp.float32)
    return g.astype(kernel_dtype)


def _swap_io(k: jax.Array) -> jax.Array:
    return k.transpose(0, 1, 3, 2)


def _strided_chunked(x: jax.Array, k: jax.Array) -> jax.Array:
    out = (x.shape[0], -(-x.shape[1] // 2), -(-x.shape[2] // 2), k.shape[-1])
    return map_in_chunks(lambda b: _strided(b, k), x, _chunk(x, out))


def _transposed_chunked(x: jax.Array, k: jax.Array) -> jax.Array:
    out = (x.shape[0], 2 * x.shape[1], 2 * x.shape[2], k.shape[-1])
    kernels = _transposed_weights(k)  # once, outside the loop over chunks
    return map_in_chunks(lambda b: _transposed_apply(b, kernels), x, _chunk(x, out))


@jax.custom_vjp
def strided_conv(x: jax.Array, k: jax.Array) -> jax.Array:
    """``Conv2d(k=5, stride=2, padding=2)`` on NHWC ``x`` with an HWIO ``(5, 5, I, O)`` kernel."""
    return _strided_chunked(x, k)


def _strided_fwd(x, k):
    return _strided_chunked(x, k), (x, k)


def _strided_bwd(res, dy):
    x, k = res
    h, w = x.shape[1:3]
    chunk = _chunk(x, dy.shape)
    # S's adjoint is T (cropped for odd sizes)
    kernels = _transposed_weights(_swap_io(k))
    dx = map_in_chunks(lambda b: _transposed_apply(b, kernels), dy, chunk)[:, :h, :w]
    return dx.astype(x.dtype), _kernel_grad(x, dy, chunk, k.dtype)


strided_conv.defvjp(_strided_fwd, _strided_bwd)


@jax.custom_vjp
def transposed_conv(x: jax.Array, k: jax.Array) -> jax.Array:
    """``ConvTranspose2d(k=5, stride=2, padding=2, output_padding=1)`` on NHWC ``x`` with a
    ``(5, 5, I, O)`` kernel (torch's weight ``.transpose(2, 3, 0, 1)``)."""
    return _transposed_chunked(x, k)


def _transposed_fwd(x, k):
    return _transposed_chunked(x, k), (x, k)


def _transposed_bwd(res, dy):
    x, k = res
    chunk = _chunk(x, dy.shape)
    k_adjoint = _swap_io(k)
    dx = map_in_chunks(lambda b: _strided(b, k_adjoint), dy, chunk)  # T's adjoint is S
    return dx.astype(x.dtype), _swap_io(_kernel_grad(dy, x, chunk, k.dtype))


transposed_conv.defvjp(_transposed_fwd, _transposed_bwd)
