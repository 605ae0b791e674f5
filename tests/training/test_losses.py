"""SSIM / combined loss identities and agreement with pytorch-msssim."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from pytorch_msssim import ssim as torch_ssim

from sar_jax.metrics.psnr import psnr
from sar_jax.metrics.ssim import ssim
from sar_jax.training.losses import combined_loss, per_image_metrics


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 32, 32, 1)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    return x, y


def test_identical_images(images):
    x, _ = images
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    loss, metrics = combined_loss(x, x)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    assert float(metrics["mse"]) == 0.0


def test_anti_correlated_is_clamped_to_zero(images):
    x, _ = images
    assert float(ssim(1.0 - x, x)) == 0.0
    loss, _ = combined_loss(1.0 - x, x)
    assert float(loss) == pytest.approx(0.5 * np.mean((1 - 2 * x) ** 2) + 0.5, rel=1e-5)


def test_matches_pytorch_msssim(images):
    x, y = images
    ref = torch_ssim(torch.from_numpy(y.transpose(0, 3, 1, 2)), torch.from_numpy(x.transpose(0, 3, 1, 2)),
                     data_range=1.0, win_size=11, size_average=True, nonnegative_ssim=True)
    assert abs(float(ssim(y, x)) - float(ref)) < 1e-5


def test_psnr_and_per_image_metrics(images):
    x, y = images
    mse = np.mean((x - y) ** 2)
    assert float(psnr(y, x)) == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    per = per_image_metrics(y, x)
    assert per["loss"].shape == (3,)
    np.testing.assert_allclose(np.asarray(per["mse"]), ((x - y) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    loss, metrics = combined_loss(y, x)
    assert float(loss) == pytest.approx(float(jnp.mean(per["loss"])), rel=1e-5)
    assert float(metrics["ssim"]) == pytest.approx(float(jnp.mean(per["ssim"])), rel=1e-6)
