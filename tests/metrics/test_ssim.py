"""sar_jax.metrics.ssim: the Gaussian window, MS-SSIM vs pytorch-msssim, and the SSIM window as
banded matmuls (images up to 512 a side), which equals dm-pix's filter and pytorch-msssim, values
and gradients, and is exact on constant images; larger images take dm-pix's own filter."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pytorch_msssim
import torch
from pytorch_msssim import ssim as torch_ssim

from sar_jax.metrics import ssim as ssim_module
from sar_jax.metrics.ssim import (
    banded_gaussian_filter,
    banded_gaussian_matrix,
    gaussian_window,
    ms_ssim,
    ms_ssim_per_image,
    ms_ssim_window,
    ssim,
)
from sar_jax.training.losses import combined_loss


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
    assert abs(float(ssim(jnp.asarray(y), jnp.asarray(x))) - float(ref)) < 1e-5


def test_matmul_filter_equals_dm_pix_filter_values_and_gradients(monkeypatch):
    x, y = _pair((2, 48, 64, 1), 1)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def value_and_grad():
        return jax.value_and_grad(lambda a: combined_loss(a, x)[0])(y)

    fast_v, fast_g = value_and_grad()
    monkeypatch.setattr(ssim_module, "MATMUL_FILTER_MAX_SIDE", 0)
    ref_v, ref_g = value_and_grad()
    assert abs(float(fast_v) - float(ref_v)) < 1e-6
    np.testing.assert_allclose(np.asarray(fast_g), np.asarray(ref_g), atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("a, b", [(0.3, 0.3), (0.7, 0.2), (0.123, 0.987), (1.0, 0.0)])
def test_constant_images_give_the_closed_form(a, b):
    """Two constant images: all variances are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)."""
    c1 = (0.01 * 1.0) ** 2
    exact = (2 * a * b + c1) / (a * a + b * b + c1)
    x = jnp.full((2, 64, 80, 1), a, jnp.float32)
    y = jnp.full((2, 64, 80, 1), b, jnp.float32)
    assert abs(float(ssim(x, y)) - exact) < 1e-6


def test_filter_is_dm_pix_gaussian_blur():
    z = jnp.asarray(np.random.default_rng(3).random((2, 30, 41, 3), dtype=np.float32))
    fast = banded_gaussian_filter(z, 11, 1.5)
    taps = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
    taps /= taps.sum()
    ref = np.zeros((2, 20, 31, 3))
    zz = np.asarray(z, np.float64)
    for i in range(20):
        for j in range(31):
            ref[:, i, j] = np.einsum("nhwc,h,w->nc", zz[:, i:i + 11, j:j + 11], taps, taps)
    assert fast.shape == (2, 20, 31, 3)
    np.testing.assert_allclose(np.asarray(fast), ref, atol=2e-7, rtol=1e-6)


def test_banded_matrix_is_the_valid_gaussian_filter():
    m = banded_gaussian_matrix(20, 11, 1.5)
    assert m.shape == (20, 10)
    np.testing.assert_allclose(m.sum(axis=0), 1.0, rtol=1e-6)
    z = np.random.default_rng(2).random(20).astype(np.float32)
    taps = m[:11, 0]
    np.testing.assert_allclose(z @ m, np.convolve(z, taps[::-1], mode="valid"), rtol=1e-5)


def test_gaussian_window_is_pytorch_msssims_within_two_ulp():
    from pytorch_msssim.ssim import _fspecial_gauss_1d

    for size in (3, 5, 7, 9, 11):
        ours = gaussian_window(size)
        ref = _fspecial_gauss_1d(size, 1.5).reshape(-1).numpy()
        assert ours.dtype == np.float32 and ours.shape == (size,)
        np.testing.assert_array_max_ulp(ours, ref, maxulp=2)
        assert abs(float(ours.astype(np.float64).sum()) - 1.0) < 1e-6


def test_ms_ssim_is_the_batch_mean_and_matches_pytorch_msssim():
    x, y = _pair((2, 64, 64, 1), 4)
    ours = float(ms_ssim(jnp.asarray(y), jnp.asarray(x), win_size=3))
    ref = pytorch_msssim.ms_ssim(torch.from_numpy(y.transpose(0, 3, 1, 2)), torch.from_numpy(x.transpose(0, 3, 1, 2)),
                                 data_range=1.0, size_average=True, win_size=3)
    assert abs(ours - float(ref)) < 2e-5
    assert ours == pytest.approx(float(jnp.mean(ms_ssim_per_image(jnp.asarray(y), jnp.asarray(x), win_size=3))))
    with pytest.raises(ValueError, match="win_size 11"):
        ms_ssim(jnp.asarray(y), jnp.asarray(x))


@pytest.mark.parametrize("shape", [(3, 64, 64, 1), (2, 200, 170, 1), (2, 185, 165, 1)])
def test_ms_ssim_per_image_matches_pytorch_msssim_on_odd_sizes(shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape, dtype=np.float32)
    y = np.clip(x + 0.1 * rng.standard_normal(shape).astype(np.float32), 0, 1)
    win = ms_ssim_window(min(shape[1:3]))
    ours = np.asarray(ms_ssim_per_image(y, x, win_size=win))
    ref = pytorch_msssim.ms_ssim(torch.from_numpy(y).permute(0, 3, 1, 2), torch.from_numpy(x).permute(0, 3, 1, 2),
                                 data_range=1.0, size_average=False, win_size=win).numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_ms_ssim_window_fits_the_four_downsamplings():
    assert ms_ssim_window(256) == 11
    assert ms_ssim_window(161) == 11
    assert ms_ssim_window(160) == 9
    assert ms_ssim_window(64) == 3
    assert ms_ssim_window(32) is None
