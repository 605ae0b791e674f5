"""sar_jax.ops.conv: the custom VJPs of the convolutions: input and kernel gradients equal torch's autograd."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sar_jax.ops import conv
from sar_jax.ops.conv import strided_conv, transposed_conv


def _torch_grads(op, x, w, g):
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    (op(xt, wt) * torch.from_numpy(g)).sum().backward()
    return xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("size", [(16, 16), (10, 13)])
@pytest.mark.parametrize("in_channels", [3, 6, 128])  # the input gradient is a T to in_channels outputs
def test_strided_conv_gradients_equal_torch(size, in_channels):
    rng = np.random.default_rng(4)
    h, w = size
    x = rng.standard_normal((2, in_channels, h, w)).astype(np.float32)
    wt = rng.standard_normal((5, in_channels, 5, 5)).astype(np.float32)
    g = rng.standard_normal((2, 5, (h + 1) // 2, (w + 1) // 2)).astype(np.float32)
    ref_dx, ref_dw = _torch_grads(lambda a, b: torch.nn.functional.conv2d(a, b, stride=2, padding=2), x, wt, g)
    loss = lambda a, k: jnp.sum(strided_conv(a, k) * g.transpose(0, 2, 3, 1))
    dx, dk = jax.jit(jax.grad(loss, argnums=(0, 1)))(x.transpose(0, 2, 3, 1), wt.transpose(2, 3, 1, 0))
    np.testing.assert_allclose(np.asarray(dx).transpose(0, 3, 1, 2), ref_dx, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dk).transpose(3, 2, 0, 1), ref_dw, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("out_channels", [1, 4, 5, 128])  # <= 4: matmul + shifted sums; < 128: 2 convs; 4
def test_transposed_conv_values_and_gradients_equal_torch(out_channels):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    wt = rng.standard_normal((3, out_channels, 5, 5)).astype(np.float32)
    g = rng.standard_normal((2, out_channels, 14, 18)).astype(np.float32)
    op = lambda a, b: torch.nn.functional.conv_transpose2d(a, b, stride=2, padding=2, output_padding=1)
    ref = op(torch.from_numpy(x), torch.from_numpy(wt)).numpy()
    out = jax.jit(transposed_conv)(x.transpose(0, 2, 3, 1), wt.transpose(2, 3, 0, 1))
    np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, atol=2e-5, rtol=1e-5)
    ref_dx, ref_dw = _torch_grads(op, x, wt, g)
    exact_dx, exact_dw = _torch_grads(op, x.astype(np.float64), wt.astype(np.float64), g.astype(np.float64))
    loss = lambda a, k: jnp.sum(transposed_conv(a, k) * g.transpose(0, 2, 3, 1))
    dx, dk = jax.jit(jax.grad(loss, argnums=(0, 1)))(x.transpose(0, 2, 3, 1), wt.transpose(2, 3, 0, 1))
    # with 128 output channels an input gradient sums 3200 products (|dx| up to ~170): float32 itself is
    # ~2e-4 from the exact sum, so each side is held to the float64 result, JAX within twice torch's error
    for got, ref, exact in ((np.asarray(dx).transpose(0, 3, 1, 2), ref_dx, exact_dx),
                            (np.asarray(dk).transpose(2, 3, 0, 1), ref_dw, exact_dw)):
        np.testing.assert_allclose(got, ref, atol=max(1e-4, 4 * np.abs(ref - exact).max()), rtol=1e-5)
        assert np.abs(got - exact).max() <= max(1e-4, 2 * np.abs(ref - exact).max())


def test_gradients_in_bfloat16_follow_float32():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 3)), jnp.float32)
    for fn, out_channels in ((strided_conv, 4), (transposed_conv, 1), (transposed_conv, 6)):
        k = jnp.asarray(rng.standard_normal((5, 5, 3, out_channels)), jnp.float32)
        def loss(a, kk, dtype):
            return jnp.sum(jnp.square(fn(a.astype(dtype), kk.astype(dtype)).astype(jnp.float32)))
        g32 = jax.grad(loss, argnums=(0, 1))(x, k, jnp.float32)
        g16 = jax.grad(loss, argnums=(0, 1))(x, k, jnp.bfloat16)
        for a, b in zip(g32, g16):
            assert b.dtype == jnp.float32
            rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))
            assert rel < 3e-2, (fn.__name__, rel)


@pytest.mark.parametrize("kind", ["strided", "transposed"])
def test_batch_chunked_convolutions_equal_torch(kind, monkeypatch):
    """With a chunk budget of two samples, a batch of 5 runs as chunks 2 + 2 + 1 (forward, input
    gradient, and the kernel gradient summed over chunks); all still equal torch."""
    rng = np.random.default_rng(7)
    if kind == "strided":
        x = rng.standard_normal((5, 3, 16, 16)).astype(np.float32)
        wt = rng.standard_normal((5, 3, 5, 5)).astype(np.float32)  # (out, in, kh, kw)
        g = rng.standard_normal((5, 5, 8, 8)).astype(np.float32)
        op = lambda a, b: torch.nn.functional.conv2d(a, b, stride=2, padding=2)
        fn, kernel, back = strided_conv, wt.transpose(2, 3, 1, 0), (3, 2, 0, 1)
        per_sample = 16 * 16 * 3
    else:
        x = rng.standard_normal((5, 3, 7, 9)).astype(np.float32)
        wt = rng.standard_normal((3, 6, 5, 5)).astype(np.float32)  # (in, out, kh, kw)
        g = rng.standard_normal((5, 6, 14, 18)).astype(np.float32)
        op = lambda a, b: torch.nn.functional.conv_transpose2d(a, b, stride=2, padding=2, output_padding=1)
        fn, kernel, back = transposed_conv, wt.transpose(2, 3, 0, 1), (2, 3, 0, 1)
        per_sample = 14 * 18 * 6
    monkeypatch.setattr(conv, "CPU_CONV_CHUNK_ELEMENTS", 2 * per_sample)
    nhwc = lambda shape: shape[:1] + shape[2:] + shape[1:2]  # noqa: E731
    assert conv._chunk(jnp.zeros(nhwc(x.shape)), nhwc(g.shape)) == 2
    ref = op(torch.from_numpy(x), torch.from_numpy(wt)).numpy()
    xj = x.transpose(0, 2, 3, 1)
    out = jax.jit(fn)(xj, kernel)
    np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, atol=2e-5, rtol=1e-5)
    ref_dx, ref_dw = _torch_grads(op, x, wt, g)
    loss = lambda a, k: jnp.sum(fn(a, k) * g.transpose(0, 2, 3, 1))
    dx, dk = jax.jit(jax.grad(loss, argnums=(0, 1)))(xj, kernel)
    np.testing.assert_allclose(np.asarray(dx).transpose(0, 3, 1, 2), ref_dx, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dk).transpose(*back), ref_dw, atol=1e-4, rtol=1e-5)
