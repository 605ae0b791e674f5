"""Decoder: three DeconvBlocks and a plain transposed conv + sigmoid; mirrors the Encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sar_torch_ref.models.blocks import DeconvBlock


class Decoder(nn.Module):
    """``block0`` (latent -> 4b), ``block1`` (4b -> 2b), ``block2`` (2b -> b), ``final``
    (b -> in_channels, bias) followed by a sigmoid, so outputs lie in (0, 1)."""

    def __init__(self, model_cfg: dict[str, Any]) -> None:
        super().__init__()
        c_in, b, k = model_cfg["in_channels"], model_cfg["base_channels"], model_cfg["kernel_size"]
        self.block0 = DeconvBlock(model_cfg["latent_channels"], 4 * b, k)
        self.block1 = DeconvBlock(4 * b, 2 * b, k)
        self.block2 = DeconvBlock(2 * b, b, k)
        self.final = nn.ConvTranspose2d(b, c_in, k, stride=2, padding=k // 2, output_padding=1, bias=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.final(self.block2(self.block1(self.block0(z)))))
