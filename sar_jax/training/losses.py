"""Losses and metrics: MSE, PSNR, SSIM (dm-pix) and the combined reconstruction loss.

SSIM follows pytorch-msssim's ``ssim(..., nonnegative_ssim=True)`` semantics: Gaussian
window (sigma 1.5) applied without padding, SSIM map averaged per image and channel, negative
values clamped to 0 per image/channel, then averaged. dm-pix computes the map; the per-channel
clamp is added here because dm-pix has none. For images up to 512 pixels a side the Gaussian
window is handed to dm-pix (its ``filter_fn``) as two banded matmuls, see
:func:`banded_gaussian_filter`.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

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


#: Up to this image side the SSIM window is applied as two banded matmuls; larger images use
#: dm-pix's own filter (the matmuls' cost grows with the side squared).
MATMUL_FILTER_MAX_SIDE = 512


def _banded_gaussian(n: int, window: int, sigma: float) -> np.ndarray:
    """(n, n - window + 1) matrix whose column j holds the normalised Gaussian at rows
    j..j+window-1: ``z @ m`` is the 'valid' 1-D Gaussian filtering of z (dm-pix's window)."""
    taps = np.exp(-0.5 * ((np.arange(window) - window // 2) / sigma) ** 2)
    taps /= taps.sum()
    m = np.zeros((n, n - window + 1), np.float32)
    for j in range(n - window + 1):
        m[j:j + window, j] = taps
    return m


def banded_gaussian_filter(z: jax.Array, window: int = 11, sigma: float = 1.5) -> jax.Array:
    """dm-pix's separable 'valid' Gaussian filter of (N, H, W, C) images, as two banded matmuls.

    Hand-written because dm-pix's filter (vmapped 1-D convolutions over a single channel) is
    XLA:CPU's slowest kind of convolution: at batch 8, 256x256 this cuts SSIM's forward ~4x and
    the train step by ~10%. Each image is filtered relative to its first pixel,
    ``filter(z - z0) + z0`` (exact, as every window sums to 1): SSIM's variances are
    ``filter(x^2) - filter(x)^2``, and on constant images this makes both terms bit-identical,
    so SSIM equals the closed form instead of carrying float32 cancellation noise. ``z0`` is a
    constant to autodiff: the exact filter does not depend on it, so its gradient is the plain
    filter's (without it, ``z0`` would collect a float32 sum of terms that cancel to 0).
    """
    h, w = z.shape[-3], z.shape[-2]
    z0 = jax.lax.stop_gradient(z[:, :1, :1, :])
    hi = jax.lax.Precision.HIGHEST
    d = jnp.einsum("nhwc,wv->nhvc", z - z0, _banded_gaussian(w, window, sigma), precision=hi)
    return jnp.einsum("nhvc,hu->nuvc", d, _banded_gaussian(h, window, sigma), precision=hi) + z0


def ssim_per_image(x_hat: jax.Array, x: jax.Array, window_size: int = 11,
                   data_range: float = 1.0) -> jax.Array:
    """SSIM of each image (N,), clamped at 0 per image and channel (nonnegative_ssim)."""
    filter_fn = None
    if x.ndim == 4 and max(x.shape[1:3]) <= MATMUL_FILTER_MAX_SIDE:
        filter_fn = lambda z: banded_gaussian_filter(z, window_size)  # noqa: E731
    ssim_map = pix.ssim(x_hat.astype(jnp.float32), x.astype(jnp.float32), max_val=data_range,
                        filter_size=window_size, filter_sigma=1.5, return_map=True, filter_fn=filter_fn)
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
