"""Loss and metric identities."""

from __future__ import annotations

import math

import pytest
import torch

from sar_torch_ref.evaluation import per_image_metrics, psnr, ssim
from sar_torch_ref.losses import PSNR_MSE_FLOOR, CombinedLoss, mse, mse_per_image

LOSS_CFG = {"mse_weight": 0.5, "ssim_weight": 0.5, "ssim_window": 11}


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.1 + 0.7 * torch.rand(3, 1, 32, 32, generator=g)  # in [0.1, 0.8]


def test_identical_images(images):
    loss, m = CombinedLoss()(images, images)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    assert float(m["loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(m["mse"]) == 0.0
    assert float(m["ssim"]) == pytest.approx(1.0, abs=1e-6)
    assert float(m["psnr"]) == pytest.approx(10 * math.log10(1 / PSNR_MSE_FLOOR))
    assert float(ssim(images, images)) == pytest.approx(1.0, abs=1e-6)
    per = per_image_metrics(images, images, LOSS_CFG)
    assert torch.allclose(per["ssim"], torch.ones(3), atol=1e-6)
    assert torch.allclose(per["loss"], torch.zeros(3), atol=1e-6)


def test_constant_offset(images):
    c = 0.1
    x_hat = images + c
    loss, m = CombinedLoss(0.5, 0.5, 11)(x_hat, images)
    assert float(m["mse"]) == pytest.approx(c * c, rel=1e-5)
    assert float(m["psnr"]) == pytest.approx(20.0, rel=1e-5)  # 10 log10(1 / 0.01)
    assert float(psnr(x_hat, images)) == pytest.approx(20.0, rel=1e-5)
    s = float(m["ssim"])
    assert 0.0 < s < 1.0  # only the luminance term drops below 1
    assert float(loss) == pytest.approx(0.5 * c * c + 0.5 * (1 - s), rel=1e-6)
    per = per_image_metrics(x_hat, images, LOSS_CFG)
    assert torch.allclose(per["mse"], torch.full((3,), c * c), rtol=1e-5)
    assert torch.allclose(per["psnr"], torch.full((3,), 20.0), rtol=1e-5)


def test_weights_select_terms(images):
    x_hat = torch.clamp(images + 0.05 * torch.randn_like(images), 0, 1)
    only_mse, m = CombinedLoss(1.0, 0.0, 7)(x_hat, images)
    assert float(only_mse) == pytest.approx(float(mse(x_hat, images)))
    only_ssim, m = CombinedLoss(0.0, 1.0, 7)(x_hat, images)
    assert float(only_ssim) == pytest.approx(1.0 - float(ssim(x_hat, images, 7)), abs=1e-6)


def test_ssim_is_nonnegative(images):
    assert float(ssim(1.0 - images, images)) >= 0.0  # anti-correlated: raw SSIM < 0, clipped


def test_per_image_mean_equals_batch_loss(images):
    x_hat = torch.clamp(images + 0.05 * torch.randn_like(images), 0, 1)
    loss, m = CombinedLoss(0.3, 0.7, 11)(x_hat, images)
    per = per_image_metrics(x_hat, images, {"mse_weight": 0.3, "ssim_weight": 0.7, "ssim_window": 11})
    assert all(v.shape == (3,) for v in per.values())
    assert float(per["loss"].mean()) == pytest.approx(float(loss), rel=1e-5)
    assert float(per["ssim"].mean()) == pytest.approx(float(m["ssim"]), rel=1e-5)
    assert torch.allclose(per["mse"], mse_per_image(x_hat, images))


def test_loss_has_gradients_and_detached_metrics(images):
    x_hat = torch.full_like(images, 0.5, requires_grad=True)
    loss, m = CombinedLoss()(x_hat, images)
    loss.backward()
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all()
    assert all(not v.requires_grad and v.ndim == 0 for v in m.values())
    assert set(m) == {"loss", "mse", "ssim", "psnr"}
