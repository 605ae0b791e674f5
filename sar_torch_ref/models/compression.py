"""The learned codecs (Balle et al. 2018, CompressAI's bmshj2018 shapes), NCHW, torch default init.

- :class:`FactorizedPrior`: g_a (4 strided 5x5 convs with GDN) -> entropy bottleneck over M
  channels -> g_s (4 transposed convs with IGDN). Image sides multiples of 16.
- :class:`ScaleHyperprior`: the same transforms; h_a(|y|) -> z -> entropy bottleneck over N
  channels -> h_s -> scales of a Gaussian conditional on y. Image sides multiples of 64.

``forward(x, noise=None) -> (x_hat, likelihoods)``; ``train()`` / ``eval()`` selects noise or
rounding; ``noise`` ({"y": u_y, "z": u_z}, NCHW) replaces the uniform draws. The state_dict keys
(``g_a.conv0.weight``, ``g_a.gdn0.beta``, ``entropy_bottleneck.matrix0``, ...) are the contract
that :mod:`sar_jax.parity.convert_codec` maps to the Flax tree.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from sar_torch_ref.models.entropy import EntropyBottleneck, GaussianConditional
from sar_torch_ref.models.gdn import GDN, IGDN


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    """Conv2d(k, stride, padding k // 2) with bias."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5) -> nn.ConvTranspose2d:
    """ConvTranspose2d(k, stride 2, padding k // 2, output_padding 1) with bias: doubles H and W."""
    return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, output_padding=1)


def analysis(c_in: int, n: int, m: int) -> nn.Sequential:
    """g_a: conv0 gdn0 conv1 gdn1 conv2 gdn2 conv3 (in -> N -> N -> N -> M), H/16."""
    return nn.Sequential(OrderedDict([("conv0", conv(c_in, n)), ("gdn0", GDN(n)), ("conv1", conv(n, n)),
                                      ("gdn1", GDN(n)), ("conv2", conv(n, n)), ("gdn2", GDN(n)),
                                      ("conv3", conv(n, m))]))


def synthesis(m: int, n: int, c_out: int) -> nn.Sequential:
    """g_s: deconv0 igdn0 deconv1 igdn1 deconv2 igdn2 deconv3 (M -> N -> N -> N -> out), H x 16."""
    return nn.Sequential(OrderedDict([("deconv0", deconv(m, n)), ("igdn0", IGDN(n)), ("deconv1", deconv(n, n)),
                                      ("igdn1", IGDN(n)), ("deconv2", deconv(n, n)), ("igdn2", IGDN(n)),
                                      ("deconv3", deconv(n, c_out))]))


class _Codec(nn.Module):
    """What both codecs share: ``aux_loss``, the entropy bottleneck's quantile loss."""

    entropy_bottleneck: EntropyBottleneck

    def aux_loss(self) -> torch.Tensor:
        """The entropy bottleneck's quantile loss (only its ``quantiles`` receive a gradient)."""
        return self.entropy_bottleneck.loss()


class FactorizedPrior(_Codec):
    """bmshj2018-factorized: ``g_a``, ``entropy_bottleneck`` (M channels), ``g_s``."""

    DOWNSAMPLING = 16

    def __init__(self, model_cfg: dict[str, Any]) -> None:
        super().__init__()
        c, n, m = model_cfg["in_channels"], model_cfg["N"], model_cfg["M"]
        self.g_a = analysis(c, n, m)
        self.g_s = synthesis(m, n, c)
        self.entropy_bottleneck = EntropyBottleneck(m)

    def forward(self, x: torch.Tensor, noise: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y = self.g_a(x)
        y_hat, y_lik = self.entropy_bottleneck(y, (noise or {}).get("y"))
        return self.g_s(y_hat), {"y": y_lik}


class ScaleHyperprior(_Codec):
    """bmshj2018-hyperprior: ``g_a``, ``h_a``, ``entropy_bottleneck`` (N channels, on z), ``h_s``
    (-> scales), ``gaussian_conditional`` (on y), ``g_s``."""

    DOWNSAMPLING = 64

    def __init__(self, model_cfg: dict[str, Any]) -> None:
        super().__init__()
        c, n, m = model_cfg["in_channels"], model_cfg["N"], model_cfg["M"]
        self.g_a = analysis(c, n, m)
        self.g_s = synthesis(m, n, c)
        self.h_a = nn.Sequential(OrderedDict([("conv0", conv(m, n, 3, 1)), ("relu0", nn.ReLU()),
                                              ("conv1", conv(n, n)), ("relu1", nn.ReLU()), ("conv2", conv(n, n))]))
        self.h_s = nn.Sequential(OrderedDict([("deconv0", deconv(n, n)), ("relu0", nn.ReLU()),
                                              ("deconv1", deconv(n, n)), ("relu1", nn.ReLU()),
                                              ("conv2", conv(n, m, 3, 1)), ("relu2", nn.ReLU())]))
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional()

    def forward(self, x: torch.Tensor, noise: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noise = noise or {}
        y = self.g_a(x)
        z_hat, z_lik = self.entropy_bottleneck(self.h_a(torch.abs(y)), noise.get("z"))
        y_hat, y_lik = self.gaussian_conditional(y, self.h_s(z_hat), noise.get("y"))
        return self.g_s(y_hat), {"y": y_lik, "z": z_lik}
