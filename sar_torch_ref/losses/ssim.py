"""SSIM via ``pytorch_msssim`` (Gaussian window, sigma 1.5, K = (0.01, 0.03), data range 1,
non-negative SSIM), as in the original design."""

from __future__ import annotations

import pytorch_msssim
import torch
from torch import nn


def make_ssim(window: int, channels: int, size_average: bool = True) -> pytorch_msssim.SSIM:
    """The original SSIM module: ``SSIM(data_range=1.0, win_size=window, size_average=...,
    channel=channels, nonnegative_ssim=True)``."""
    return pytorch_msssim.SSIM(data_range=1.0, win_size=window, size_average=size_average,
                               channel=channels, nonnegative_ssim=True)


def ssim_index(x_hat: torch.Tensor, x: torch.Tensor, window: int, size_average: bool = True) -> torch.Tensor:
    """Functional SSIM with the same arguments: a 0-d tensor (batch mean) or, with
    ``size_average=False``, one value per image (mean over channels), shape (N,)."""
    return pytorch_msssim.ssim(x_hat, x, data_range=1.0, size_average=size_average, win_size=window,
                               nonnegative_ssim=True)


class SSIMLoss(nn.Module):
    """``1 - SSIM(x_hat, x)`` averaged over the batch."""

    def __init__(self, window: int, channels: int = 1) -> None:
        super().__init__()
        self.ssim = make_ssim(window, channels)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.ssim(x_hat, x)
