"""Encoder: three ConvBlocks and a plain strided conv; (N, C, H, W) -> (N, latent, H/16, W/16)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sar_torch_ref.models.blocks import ConvBlock


class Encoder(nn.Module):
    """``block0`` (in -> b), ``block1`` (b -> 2b), ``block2`` (2b -> 4b), ``final`` (4b -> latent,
    bias, no BatchNorm, no activation); b = ``model_cfg["base_channels"]``."""

    def __init__(self, model_cfg: dict[str, Any]) -> None:
        super().__init__()
        c_in, b = model_cfg["in_channels"], model_cfg["base_channels"]
        k, slope = model_cfg["kernel_size"], model_cfg["negative_slope"]
        self.block0 = ConvBlock(c_in, b, slope, k)
        self.block1 = ConvBlock(b, 2 * b, slope, k)
        self.block2 = ConvBlock(2 * b, 4 * b, slope, k)
        self.final = nn.Conv2d(4 * b, model_cfg["latent_channels"], k, stride=2, padding=k // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.block2(self.block1(self.block0(x))))
