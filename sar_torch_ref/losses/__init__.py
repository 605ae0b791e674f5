"""Losses of the original design: MSE, SSIM (pytorch_msssim) and their weighted combination."""

from sar_torch_ref.losses.combined import PSNR_MSE_FLOOR, CombinedLoss, psnr_from_mse
from sar_torch_ref.losses.mse import mse, mse_per_image
from sar_torch_ref.losses.ssim import SSIMLoss, make_ssim, ssim_index

__all__ = ["CombinedLoss", "PSNR_MSE_FLOOR", "SSIMLoss", "make_ssim", "mse", "mse_per_image",
           "psnr_from_mse", "ssim_index"]
