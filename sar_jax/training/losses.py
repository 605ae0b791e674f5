"""The training losses (``loss.kind``), and the same per image for validation:

- ``combined`` (the design): ``mse_weight * MSE + ssim_weight * (1 - SSIM)``;
- ``rate_distortion`` (learned codecs): ``lmbda * D + R``, D = MSE or 1 - MS-SSIM (``loss.distortion``),
  R the bits per input pixel of the model's likelihoods;
- ``log_gamma`` (despeckling): the negative log-likelihood of Gamma speckle given the predicted
  log-reflectivity (MERLIN / SAR2SAR), on the normalised log scale.

The metrics themselves live in :mod:`sar_jax.metrics`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sar_jax.metrics.psnr import mse_per_image, psnr_from_mse
from sar_jax.metrics.ssim import ms_ssim_per_image, ms_ssim_window, ssim, ssim_per_image

#: ``(x_hat, aux, target) -> (loss, metrics)`` for a batch, or per image (each metric ``(N,)``).
LossFn = Callable[[jax.Array, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


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


def bits_per_pixel(likelihoods: dict[str, jax.Array], num_pixels: int) -> jax.Array:
    """Per image ``sum(-log2 p) / num_pixels`` over every likelihood array, ``(N,)``."""
    return sum(jnp.sum(-jnp.log2(p), axis=tuple(range(1, p.ndim))) for p in likelihoods.values()) / num_pixels


def rate_distortion_per_image(x_hat: jax.Array, likelihoods: dict[str, jax.Array], x: jax.Array, *, lmbda: float,
                              distortion: str, window_size: int) -> dict[str, jax.Array]:
    """Per image ``lmbda * D + bpp`` with D on the unclipped ``x_hat`` (the gradient needs it) and the
    reported mse, psnr and ssim on ``x_hat`` clipped to [0, 1] (what a decoder writes)."""
    bpp = bits_per_pixel(likelihoods, x.shape[1] * x.shape[2])
    if distortion == "ms_ssim":
        win = ms_ssim_window(min(x.shape[1], x.shape[2]), window_size)
        if win is None:
            raise ValueError(f"loss.distortion ms_ssim needs patches of at least 33 px, got {x.shape[1]}")
        d = 1.0 - ms_ssim_per_image(x_hat, x, win)
    else:
        d = mse_per_image(x_hat, x)
    shown = jnp.clip(x_hat, 0.0, 1.0)
    mse = mse_per_image(shown, x)
    return {"loss": lmbda * d + bpp, "mse": mse, "ssim": ssim_per_image(shown, x, window_size),
            "psnr": psnr_from_mse(mse), "bpp": bpp}


def log_gamma_per_image(x_hat: jax.Array, x: jax.Array, *, db_range: float,
                        window_size: int) -> dict[str, jax.Array]:
    """Per image mean of ``s - t + exp(t - s) - 1`` with s, t the predicted log-reflectivity and the
    target's log-intensity in nepers (``ln``; ``db_range``: the dB span of [0, 1]): the Gamma
    negative log-likelihood of intensity ``e^t`` given mean ``e^s`` divided by the number of looks, up
    to a constant; 0 at ``s = t``, and in expectation over speckle smallest at the true reflectivity."""
    scale = db_range * math.log(10.0) / 10.0
    d = (x.astype(jnp.float32) - x_hat.astype(jnp.float32)) * scale  # t - s
    nll = jnp.mean(jnp.exp(d) - d - 1.0, axis=(1, 2, 3))
    shown = jnp.clip(x_hat, 0.0, 1.0)
    mse = mse_per_image(shown, x)
    return {"loss": nll, "mse": mse, "ssim": ssim_per_image(shown, x, window_size), "psnr": psnr_from_mse(mse)}


def make_loss(config: dict[str, Any], preprocessing: dict[str, Any] | None = None) -> tuple[LossFn, LossFn]:
    """``(batch_loss, per_image)`` for the config's ``loss`` section; ``preprocessing`` (the fitted
    params) gives ``log_gamma`` its dB span."""
    loss = config["loss"]
    window = loss["ssim_window"]
    kind = loss["kind"]
    if kind == "combined":
        weights = {"mse_weight": loss["mse_weight"], "ssim_weight": loss["ssim_weight"], "window_size": window}

        def batch(x_hat: jax.Array, aux: Any, target: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
            return combined_loss(x_hat, target, **weights)

        return batch, lambda x_hat, aux, target: per_image_metrics(x_hat, target, **weights)
    if kind == "rate_distortion":
        per_image = functools.partial(rate_distortion_per_image, lmbda=loss["lmbda"], distortion=loss["distortion"],
                                      window_size=window)
    elif kind == "log_gamma":
        if preprocessing is None or preprocessing.get("mode") == "log8":
            raise ValueError("loss.kind log_gamma needs data calibrated to a dB scale (not log8 views)")
        db_range = preprocessing["vmax"] - preprocessing["vmin"]

        def per_image(x_hat: jax.Array, aux: Any, target: jax.Array) -> dict[str, jax.Array]:
            return log_gamma_per_image(x_hat, target, db_range=db_range, window_size=window)
    else:
        raise ValueError(f"loss.kind {kind!r}: expected combined, rate_distortion or log_gamma")

    def batch_mean(x_hat: jax.Array, aux: Any, target: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        metrics = {k: jnp.mean(v) for k, v in per_image(x_hat, aux, target).items()}
        metrics["psnr"] = psnr_from_mse(metrics["mse"])  # of the batch's MSE, as the design's loss reports it
        return metrics["loss"], metrics

    return batch_mean, per_image

