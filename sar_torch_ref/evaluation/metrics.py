"""Image-quality metrics (data range 1): PSNR, SSIM, and per-image values for validation."""

from __future__ import annotations

from typing import Any

import torch

from sar_torch_ref.losses.combined import psnr_from_mse
from sar_torch_ref.losses.mse import mse, mse_per_image
from sar_torch_ref.losses.ssim import ssim_index


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of the MSE over the whole batch (0-d tensor)."""
    return psnr_from_mse(mse(x_hat, x))


def ssim(x_hat: torch.Tensor, x: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Mean SSIM over the batch (0-d tensor)."""
    return ssim_index(x_hat, x, window, size_average=True)


def per_image_metrics(x_hat: torch.Tensor, x: torch.Tensor, loss_cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``loss``, ``mse``, ``ssim``, ``psnr`` of each image: 1-D tensors of length N.

    ``loss = mse_weight * mse + ssim_weight * (1 - ssim)`` per image, so the mean over images of
    ``loss`` is the combined loss of the whole set.
    """
    m = mse_per_image(x_hat, x)
    s = ssim_index(x_hat, x, loss_cfg["ssim_window"], size_average=False)
    loss = loss_cfg["mse_weight"] * m + loss_cfg["ssim_weight"] * (1.0 - s)
    return {"loss": loss, "mse": m, "ssim": s, "psnr": psnr_from_mse(m)}
