"""MSE and PSNR of image batches (NHWC, data range 1 unless given), in JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: MSE floor for PSNR, so identical images give a finite 120 dB (as sar_torch_ref's psnr_from_mse).
PSNR_MSE_FLOOR = 1e-12


def mse_per_image(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """Mean squared error of each image, ``(N,)`` float32."""
    return jnp.mean(jnp.square(x_hat.astype(jnp.float32) - x.astype(jnp.float32)), axis=(1, 2, 3))


def psnr_from_mse(mse: jax.Array, data_range: float = 1.0) -> jax.Array:
    """PSNR in dB of an MSE, floored at :data:`PSNR_MSE_FLOOR` (identical images give 120 dB, as in
    the reference)."""
    return 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse, PSNR_MSE_FLOOR))


def psnr(x_hat: jax.Array, x: jax.Array, data_range: float = 1.0) -> jax.Array:
    """PSNR in dB of the whole batch's MSE (0-d)."""
    return psnr_from_mse(jnp.mean(jnp.square(x_hat.astype(jnp.float32) - x.astype(jnp.float32))), data_range)
