"""The training loss: ``mse_weight * MSE + ssim_weight * (1 - SSIM)``."""

from __future__ import annotations

import torch
from torch import nn

from sar_torch_ref.losses.mse import mse
from sar_torch_ref.losses.ssim import make_ssim

#: MSE floor used for PSNR so identical images give a finite 120 dB (same as sar_jax.visualize).
PSNR_MSE_FLOOR = 1e-12


def psnr_from_mse(mse_value: torch.Tensor) -> torch.Tensor:
    """``10 log10(1 / mse)`` for data range 1 (mse floored at ``PSNR_MSE_FLOOR``)."""
    return 10.0 * torch.log10(1.0 / torch.clamp(mse_value, min=PSNR_MSE_FLOOR))


class CombinedLoss(nn.Module):
    """``forward(x_hat, x) -> (loss, metrics)``.

    ``loss`` is a 0-d tensor carrying gradients. ``metrics`` maps ``loss``, ``mse``, ``ssim`` and
    ``psnr`` (PSNR of the batch MSE) to DETACHED 0-d tensors on the input's device, so the
    training loop need not synchronise with the device every step (call ``float()`` to read).
    """

    def __init__(self, mse_weight: float = 0.5, ssim_weight: float = 0.5, window: int = 11,
                 channels: int = 1) -> None:
        super().__init__()
        self.mse_weight = float(mse_weight)
        self.ssim_weight = float(ssim_weight)
        self.window = int(window)
        self.ssim = make_ssim(self.window, channels)

    @classmethod
    def from_config(cls, config: dict) -> CombinedLoss:
        """Build from a full config (``loss`` section, ``model.in_channels``)."""
        loss_cfg = config["loss"]
        return cls(loss_cfg["mse_weight"], loss_cfg["ssim_weight"], loss_cfg["ssim_window"],
                   config["model"]["in_channels"])

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mse_value = mse(x_hat, x)
        ssim_value = self.ssim(x_hat, x)
        loss = self.mse_weight * mse_value + self.ssim_weight * (1.0 - ssim_value)
        metrics = {"loss": loss.detach(), "mse": mse_value.detach(), "ssim": ssim_value.detach(),
                   "psnr": psnr_from_mse(mse_value.detach())}
        return loss, metrics
