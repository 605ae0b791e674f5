"""GDN / inverse GDN (Balle et al. 2016) with CompressAI's non-negative reparametrisation, NCHW.

``beta`` (C,) and ``gamma`` (C, C) are stored reparametrised: stored = sqrt(max(v + pedestal, pedestal)),
effective = lower_bound(stored, sqrt(minimum + pedestal))**2 - pedestal with pedestal = (2**-18)**2,
minimum 1e-6 for beta and 0 for gamma. norm_c = beta_c + sum_j gamma[c, j] x_j**2; GDN returns
x / sqrt(norm), IGDN x * sqrt(norm). Only ``beta`` and ``gamma`` are in the state_dict.
"""

from __future__ import annotations

import math

import torch
from torch import nn

REPARAM_OFFSET = 2.0**-18
PEDESTAL = REPARAM_OFFSET**2
BETA_MIN = 1e-6
GAMMA_INIT = 0.1


class _LowerBound(torch.autograd.Function):
    """max(x, bound); the gradient passes where x >= bound or where it points down (grad < 0)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp_min(x, bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)).to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``max(x, bound)`` with CompressAI's LowerBound gradient."""
    return _LowerBound.apply(x, bound)


def reparam_init(v: torch.Tensor) -> torch.Tensor:
    """The stored value of a non-negative parameter whose effective value is ``v``."""
    return torch.sqrt(torch.clamp_min(v + PEDESTAL, PEDESTAL))


def reparam(stored: torch.Tensor, minimum: float) -> torch.Tensor:
    """The effective (non-negative, >= ``minimum``) value of a stored parameter."""
    return lower_bound(stored, math.sqrt(minimum + PEDESTAL)) ** 2 - PEDESTAL


class GDN(nn.Module):
    """Generalized divisive normalisation over the C channels of (N, C, H, W); ``inverse`` = IGDN."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(reparam_init(torch.ones(channels)))
        self.gamma = nn.Parameter(reparam_init(GAMMA_INIT * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        beta = reparam(self.beta, BETA_MIN)
        gamma = reparam(self.gamma, 0.0).reshape(c, c, 1, 1)
        norm = nn.functional.conv2d(x * x, gamma, beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


class IGDN(GDN):
    """Inverse GDN: x * sqrt(beta + gamma x**2)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, inverse=True)
