"""Building blocks of the original design: strided conv / transposed-conv + BatchNorm + activation.

Attribute names (``conv``, ``deconv``, ``bn``) are part of the state_dict contract that the
JAX converter maps one to one; do not rename them.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv2d(k, stride 2, padding k//2, no bias) -> BatchNorm2d -> LeakyReLU. Halves H and W."""

    def __init__(self, in_ch: int, out_ch: int, negative_slope: float, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=2, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DeconvBlock(nn.Module):
    """ConvTranspose2d(k, stride 2, padding k//2, output_padding 1, no bias) -> BatchNorm2d -> ReLU.
    Doubles H and W."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride=2, padding=kernel_size // 2,
                                         output_padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.deconv(x)))
