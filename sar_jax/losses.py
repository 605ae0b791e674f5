"""Losses and metrics: MSE, PSNR, SSIM (dm-pix) and the combined reconstruction loss.

SSIM follows pytorch-msssim's ``ssim(..., nonnegative_ssim=True)`` semantics: Gaussian
window (sigma 1.5) applied without padding, SSIM map averaged per image and channel, negative
values clamped to 0 per image/channel, then averaged. dm-pix computes the map; the per-channel
clamp is added here because dm-pix has none.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp

#: MSE floor for PSNR, so identical images give a finite 120 dB (as sar_torch_ref's psnr_from_mse).
PSNR_MSE_FLOOR = 1e-12


def mse_per_image(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """Mean squared error of each image (N,)."""
    return jnp.mean(jnp.square(x_hat.astype(jnp.float32) - x.astype(jnp.float32)), axis=(1, 2, 3))


def psnr_from_mse(mse: jax.Array, data_range: float = 1.0) -> jax.Array:
    """PSNR in dB; the MSE is floored at PSNR_MSE_FLOOR (identical images give 120 dB, as in
    the reference)."""
    return 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse, PSNR_MSE_FLOOR))


def psnr(x_hat: jax.Array, x: jax.Array, data_range: float = 1.0) -> jax.Array:
    """PSNR in dB of the whole batch's MSE."""
    return psnr_from_mse(jnp.mean(jnp.square(x_hat.astype(jnp.float32) - x.astype(jnp.float32))), data_range)


def ssim_per_image(x_hat: jax.Array, x: jax.Array, window_size: int = 11,
                   data_range: float = 1.0) -> jax.Array:
    """SSIM of each image (N,), clamped at 0 per image and channel (nonnegative_ssim)."""
    ssim_map = pix.ssim(x_hat.astype(jnp.float32), x.astype(jnp.float32), max_val=data_range,
                        filter_size=window_size, filter_sigma=1.5, return_map=True)
    per_channel = jnp.mean(ssim_map, axis=(1, 2))  # (N, C)
    return jnp.mean(jax.nn.relu(per_channel), axis=-1)


def ssim(x_hat: jax.Array, x: jax.Array, window_size: int = 11, data_range: float = 1.0) -> jax.Array:
    """Mean SSIM over the batch (scalar), as ``pytorch_msssim.ssim(size_average=True,
    nonnegative_ssim=True)``."""
    return jnp.mean(ssim_per_image(x_hat, x, window_size, data_range))


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
