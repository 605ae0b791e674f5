"""GDN / inverse GDN (Balle et al. 2016) with CompressAI's non-negative reparametrisation, NHWC.

``beta`` (C,) and ``gamma`` (C, C) are stored reparametrised: stored = sqrt(max(v + pedestal, pedestal)),
effective = lower_bound(stored, sqrt(minimum + pedestal))**2 - pedestal with pedestal = (2**-18)**2,
minimum 1e-6 for beta and 0 for gamma. norm_c = beta_c + sum_j gamma[c, j] x_j**2; GDN returns
x / sqrt(norm), IGDN x * sqrt(norm). Same names and shapes as ``sar_torch_ref.models.gdn``.
"""

from __future__ import annotations

import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

REPARAM_OFFSET = 2.0**-18
PEDESTAL = REPARAM_OFFSET**2
BETA_MIN = 1e-6
GAMMA_INIT = 0.1


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def lower_bound(x: jax.Array, bound: float) -> jax.Array:
    """``max(x, bound)`` with CompressAI's LowerBound gradient: it passes where x >= bound or where
    it points down (incoming gradient < 0), else 0."""
    return jnp.maximum(x, bound)


def _lower_bound_fwd(x: jax.Array, bound: float) -> tuple[jax.Array, jax.Array]:
    return jnp.maximum(x, bound), x


def _lower_bound_bwd(bound: float, x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (jnp.where((x >= bound) | (g < 0), g, jnp.zeros_like(g)),)


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


def reparam_init(v: jax.Array) -> jax.Array:
    """The stored value of a non-negative parameter whose effective value is ``v``."""
    return jnp.sqrt(jnp.maximum(v + PEDESTAL, PEDESTAL))


def reparam(stored: jax.Array, minimum: float) -> jax.Array:
    """The effective (non-negative, >= ``minimum``) value of a stored parameter."""
    return lower_bound(stored, math.sqrt(minimum + PEDESTAL)) ** 2 - PEDESTAL


class GDN(nn.Module):
    """Generalized divisive normalisation over the last (channel) axis; ``inverse`` = IGDN. Computed in
    float32, returned in the input's dtype."""

    inverse: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        beta = self.param("beta", lambda _, shape: reparam_init(jnp.ones(shape, jnp.float32)), (c,))
        gamma = self.param("gamma", lambda _, shape: reparam_init(GAMMA_INIT * jnp.eye(shape[0], dtype=jnp.float32)),
                           (c, c))
        xf = x.astype(jnp.float32)
        norm = reparam(beta, BETA_MIN) + jnp.einsum("...j,cj->...c", xf * xf, reparam(gamma, 0.0),
                                                    precision=jax.lax.Precision.HIGHEST)
        return (xf * (jnp.sqrt(norm) if self.inverse else jax.lax.rsqrt(norm))).astype(x.dtype)


class IGDN(GDN):
    """Inverse GDN: x * sqrt(beta + gamma x**2)."""

    inverse: bool = True
