"""``model.kind`` -> the Flax module, for the trainer, inference and the study.

Every kind is called as ``apply(variables, x, train=...) -> (x_hat, aux)`` on NHWC images in [0, 1]
whose sides are multiples of the module's ``DOWNSAMPLING``:

- ``baseline`` (:class:`~sar_jax.nn.models.SARAutoencoder`, the design): aux is the latent z;
- ``factorized`` / ``hyperprior`` (:mod:`sar_jax.nn.compression`): aux is the likelihoods
  ``{"y": ..., ("z": ...)}``; train mode draws its quantisation noise from the ``noise`` rng;
- ``unet`` (:class:`~sar_jax.nn.unet.UNet`): aux is ``{}``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def model_class(kind: str) -> type[nn.Module]:
    """The Flax module class of ``model.kind``."""
    if kind == "baseline":
        from sar_jax.nn.models import SARAutoencoder
        return SARAutoencoder
    if kind == "factorized":
        from sar_jax.nn.compression import FactorizedPrior
        return FactorizedPrior
    if kind == "hyperprior":
        from sar_jax.nn.compression import ScaleHyperprior
        return ScaleHyperprior
    if kind == "unet":
        from sar_jax.nn.unet import UNet
        return UNet
    raise ValueError(f"model.kind {kind!r}: expected baseline, factorized, hyperprior or unet")


def build_model(model_cfg: dict[str, Any], dtype: Any = jnp.float32) -> nn.Module:
    """The module for a config's ``model`` section (``dtype``: compute dtype)."""
    return model_class(model_cfg.get("kind", "baseline")).from_config(model_cfg, dtype)


def downsampling(model: nn.Module) -> int:
    """Image sides must be multiples of this (the model's total stride)."""
    return int(model.DOWNSAMPLING)


def init_variables(model: nn.Module, rng: jax.Array) -> dict[str, Any]:
    """``{"params", "batch_stats"}`` (``batch_stats`` empty for models without BatchNorm), initialised on
    one image of two latent cells a side."""
    size = 2 * downsampling(model)
    x = jnp.zeros((1, size, size, model.in_channels), jnp.float32)
    variables = dict(model.init({"params": rng, "noise": rng}, x, train=False))
    variables.setdefault("batch_stats", {})
    return variables
