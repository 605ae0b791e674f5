"""Evaluation metrics of the reference model."""

from sar_torch_ref.evaluation.metrics import per_image_metrics, psnr, ssim

__all__ = ["per_image_metrics", "psnr", "ssim"]
