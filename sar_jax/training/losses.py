"""The training loss: ``mse_weight * MSE + ssim_weight * (1 - SSIM)``, and the same per image
for validation. The metrics themselves live in :mod:`sar_jax.metrics`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sar_jax.metrics.psnr import mse_per_image, psnr_from_mse
from sar_jax.metrics.ssim import ssim, ssim_per_image


def combined_loss(x_hat: jax.Array, x: jax.Array, mse_weight: float = 0.5, ssim_weight: float = 0.5,
                  window_size: int = 11) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``mse_weight * MSE + ssim_weight * (1 - SSIM)`` -> (loss, {loss, mse, ssim, psnr})."""
    mse = jnp.mean(mse_per_image(x_hat, x))
    s = ssim(x_hat, x, window_size)
    loss = mse_weight * mse + ssim_weight * (1.0 - s)
    return loss, {"loss": loss, "mse": mse, "ssim": s, "psnr": psnr_from_mse(mse)}


def per_image_metrics(x_hat: jax.Array, x: jax.Array, mse_weight: float = 0.5,
                      ssim_weight: float = 0.5, window_size: int = 11) -> dict[str, jax.Array]:
    """Per-image loss, mse, ssim and psnr (each (N,)), for validation and evaluation."""
    mse = mse_per_image(x_hat, x)
    s = ssim_per_image(x_hat, x, window_size)
    return {"loss": mse_weight * mse + ssim_weight * (1.0 - s), "mse": mse, "ssim": s,
            "psnr": psnr_from_mse(mse)}
