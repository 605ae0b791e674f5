"""The SSIM window as banded matmuls (images up to 512 a side) equals dm-pix's filter and
pytorch-msssim, values and gradients; larger images take dm-pix's own filter."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from pytorch_msssim import ssim as torch_ssim

import sar_jax.losses as losses


def _pair(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.random(shape, dtype=np.float32)
    y = np.clip(x + 0.2 * rng.standard_normal(shape).astype(np.float32), 0.0, 1.0)
    return x, y


@pytest.mark.parametrize("shape", [(3, 40, 56, 2), (2, 600, 520, 1)])  # matmul path, dm-pix path
def test_ssim_matches_pytorch_msssim(shape):
    x, y = _pair(shape, 0)
    ref = torch_ssim(torch.from_numpy(y.transpose(0, 3, 1, 2)), torch.from_numpy(x.transpose(0, 3, 1, 2)),
                     data_range=1.0, win_size=11, size_average=True, nonnegative_ssim=True)
    assert abs(float(losses.ssim(jnp.asarray(y), jnp.asarray(x))) - float(ref)) < 1e-5


def test_matmul_filter_equals_dm_pix_filter_values_and_gradients(monkeypatch):
    x, y = _pair((2, 48, 64, 1), 1)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def value_and_grad():
        return jax.value_and_grad(lambda a: losses.combined_loss(a, x)[0])(y)

    fast_v, fast_g = value_and_grad()
    monkeypatch.setattr(losses, "_MATMUL_FILTER_MAX_SIDE", 0)
    ref_v, ref_g = value_and_grad()
    assert abs(float(fast_v) - float(ref_v)) < 1e-6
    np.testing.assert_allclose(np.asarray(fast_g), np.asarray(ref_g), atol=1e-7, rtol=1e-4)


def test_banded_matrix_is_the_valid_gaussian_filter():
    m = losses._banded_gaussian(20, 11, 1.5)
    assert m.shape == (20, 10)
    np.testing.assert_allclose(m.sum(axis=0), 1.0, rtol=1e-6)
    z = np.random.default_rng(2).random(20).astype(np.float32)
    taps = m[:11, 0]
    np.testing.assert_allclose(z @ m, np.convolve(z, taps[::-1], mode="valid"), rtol=1e-5)
