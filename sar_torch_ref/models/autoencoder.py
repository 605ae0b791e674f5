"""The SAR convolutional autoencoder (original design), NCHW."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sar_torch_ref.models.decoder import Decoder
from sar_torch_ref.models.encoder import Encoder


def init_weights(module: nn.Module, negative_slope: float) -> None:
    """The original initialisation, applied to every submodule.

    Conv2d / ConvTranspose2d weights: ``kaiming_normal_(a=negative_slope, mode="fan_out",
    nonlinearity="leaky_relu")`` (torch takes fan_out from ``weight.size(0)``, which is
    ``in_channels`` for a transposed conv), biases 0; BatchNorm weight 1, bias 0.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, a=negative_slope, mode="fan_out", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SARAutoencoder(nn.Module):
    """``encoder`` + ``decoder``; ``forward(x) -> (x_hat, z)`` with x of shape (N, C, H, W),
    H and W multiples of 16, z of shape (N, latent_channels, H/16, W/16)."""

    def __init__(self, model_cfg: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = Encoder(model_cfg)
        self.decoder = Decoder(model_cfg)
        init_weights(self, model_cfg["negative_slope"])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.decoder(z), z
