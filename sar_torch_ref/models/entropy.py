"""Entropy models of the learned codecs (Balle et al. 2018, CompressAI's formulation), NCHW.

- :class:`EntropyBottleneck`: a non-parametric factorized density per channel (appendix 6.1),
  parameters ``matrix{i}``, ``bias{i}``, ``factor{i}`` and the learned ``quantiles`` (C, 1, 3).
- :class:`GaussianConditional`: zero-mean Gaussians with given scales, no parameters.

Train mode: likelihoods of y + u with u ~ U(-0.5, 0.5) (or the given ``noise``), and the decoder's
input is rounded straight-through: y + (round(y - m) + m - y).detach(), m the detached medians
(0 for the Gaussian). Eval mode: y_hat = round(y - m) + m, and its likelihoods.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sar_torch_ref.models.gdn import lower_bound

LIKELIHOOD_BOUND = 1e-9
SCALE_BOUND = 0.11
FILTERS = (3, 3, 3, 3)
INIT_SCALE = 10.0


class EntropyBottleneck(nn.Module):
    """Factorized density over ``channels`` channels; ``forward(y, noise=None) -> (y_hat, likelihoods)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        f = (1,) + FILTERS + (1,)
        scale = INIT_SCALE ** (1 / (len(FILTERS) + 1))
        for i in range(len(FILTERS) + 1):
            init = math.log(math.expm1(1 / scale / f[i + 1]))
            self.register_parameter(f"matrix{i}", nn.Parameter(torch.full((channels, f[i + 1], f[i]), init)))
            self.register_parameter(f"bias{i}", nn.Parameter(torch.empty(channels, f[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(FILTERS):
                self.register_parameter(f"factor{i}", nn.Parameter(torch.zeros(channels, f[i + 1], 1)))
        quantiles = torch.tensor([-INIT_SCALE, 0.0, INIT_SCALE]).repeat(channels, 1, 1)
        self.quantiles = nn.Parameter(quantiles)

    def logits_cumulative(self, v: torch.Tensor, stop_gradient: bool = False) -> torch.Tensor:
        """The logit of the cumulative density at ``v`` (C, 1, n); ``stop_gradient`` detaches the
        density's parameters."""
        p = (lambda t: t.detach()) if stop_gradient else (lambda t: t)  # noqa: E731
        for i in range(len(FILTERS) + 1):
            v = torch.matmul(nn.functional.softplus(p(getattr(self, f"matrix{i}"))), v) + p(getattr(self, f"bias{i}"))
            if i < len(FILTERS):
                v = v + torch.tanh(p(getattr(self, f"factor{i}"))) * torch.tanh(v)
        return v

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(y - 1/2 < Y < y + 1/2) per element of (N, C, H, W), lower-bounded by 1e-9."""
        n, c, h, w = y.shape
        v = y.transpose(0, 1).reshape(c, 1, -1)
        lower = self.logits_cumulative(v - 0.5)
        upper = self.logits_cumulative(v + 0.5)
        sign = -torch.sign(lower + upper)
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lower_bound(lik.reshape(c, n, h, w).transpose(0, 1), LIKELIHOOD_BOUND)

    @property
    def medians(self) -> torch.Tensor:
        """The learned medians (C,), ``quantiles[:, 0, 1]``."""
        return self.quantiles[:, 0, 1]

    def forward(self, y: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.medians.detach().reshape(1, -1, 1, 1)
        y_hat, lik_input = quantize(y, m, self.training, noise)
        return y_hat, self.likelihood(lik_input)

    def loss(self) -> torch.Tensor:
        """The auxiliary loss: the cumulative logits at the quantiles vs the tail-mass targets;
        only ``quantiles`` receives its gradient."""
        t = math.log(2 / LIKELIHOOD_BOUND - 1)
        target = torch.tensor([-t, 0.0, t], dtype=self.quantiles.dtype, device=self.quantiles.device)
        return torch.abs(self.logits_cumulative(self.quantiles, stop_gradient=True) - target).sum()


def quantize(y: torch.Tensor, m: torch.Tensor | float, training: bool,
             noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder input, likelihood input): train mode (straight-through round, y + noise), eval
    mode (round(y - m) + m twice)."""
    rounded = torch.round(y - m) + m
    if not training:
        return rounded, rounded
    u = torch.empty_like(y).uniform_(-0.5, 0.5) if noise is None else noise
    return y + (rounded - y).detach(), y + u


class GaussianConditional(nn.Module):
    """Zero-mean Gaussian likelihoods with scales lower-bounded by 0.11;
    ``forward(y, scales, noise=None) -> (y_hat, likelihoods)``."""

    @staticmethod
    def likelihood(y: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Phi((0.5 - |y|) / s) - Phi((-0.5 - |y|) / s), s = max(scales, 0.11), lower-bounded by 1e-9."""
        s = lower_bound(scales, SCALE_BOUND)
        a = torch.abs(y)
        lik = _phi((0.5 - a) / s) - _phi((-0.5 - a) / s)
        return lower_bound(lik, LIKELIHOOD_BOUND)

    def forward(self, y: torch.Tensor, scales: torch.Tensor,
                noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y_hat, lik_input = quantize(y, 0.0, self.training, noise)
        return y_hat, self.likelihood(lik_input, scales)


def _phi(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-t / math.sqrt(2.0))

