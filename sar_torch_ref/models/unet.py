"""The despeckling residual U-Net (MERLIN / SAR2SAR's shape, the ``deepdespeckling`` project's
``Model`` at depth 5), NCHW, of configurable width and depth.

``D = model_cfg["unet_depth"]`` 2x2 max-pools, ``F = model_cfg["unet_features"]``; 3x3 convs with
bias, each but ``dec1`` followed by LeakyReLU(0.1); nearest-neighbour x2 upsampling; skips
concatenated after the upsampled tensor::

    enc0 (in -> F), enc1, pool, [enc{l}, pool for l = 2 .. D], enc{D+1}     (skips after pools 1 .. D-1)
    [up, cat, dec{l} (-> 2F), dec{l}b (2F -> 2F) for l = D .. 2]
    up, cat x, dec1a (-> ceil(4F/3)), dec1b (-> ceil(2F/3)), dec1 (-> in_channels)

``forward(x) -> (x - net(x), {})``: the network predicts the speckle component (normalised log
domain); no BatchNorm, no output squashing. The attribute names are the state_dict contract that
:mod:`sar_jax.parity.convert_unet` maps one to one; do not rename them. Weights keep torch's
``Conv2d`` default initialisation (as deepdespeckling).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

LEAKY_SLOPE = 0.1


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=True)


class UNet(nn.Module):
    """The residual U-Net; H and W must be multiples of ``2 ** unet_depth``."""

    def __init__(self, model_cfg: dict[str, Any]) -> None:
        super().__init__()
        c_in, f, self.depth = model_cfg["in_channels"], model_cfg["unet_features"], model_cfg["unet_depth"]
        self.enc0 = _conv(c_in, f)
        for level in range(1, self.depth + 2):
            self.add_module(f"enc{level}", _conv(f, f))
        for level in range(self.depth, 1, -1):
            below = f if level == self.depth else 2 * f
            self.add_module(f"dec{level}", _conv(below + f, 2 * f))
            self.add_module(f"dec{level}b", _conv(2 * f, 2 * f))
        a, b = -(-4 * f // 3), -(-2 * f // 3)
        self.dec1a = _conv((f if self.depth == 1 else 2 * f) + c_in, a)
        self.dec1b = _conv(a, b)
        self.dec1 = _conv(b, c_in)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        act = lambda conv, t: F.leaky_relu(conv(t), LEAKY_SLOPE)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        skips = [x]
        n = F.max_pool2d(act(self.enc1, act(self.enc0, x)), 2)
        for level in range(2, self.depth + 1):
            skips.append(n)
            n = F.max_pool2d(act(getattr(self, f"enc{level}"), n), 2)
        n = act(getattr(self, f"enc{self.depth + 1}"), n)
        for level in range(self.depth, 1, -1):
            n = torch.cat((up(n), skips.pop()), dim=1)
            n = act(getattr(self, f"dec{level}b"), act(getattr(self, f"dec{level}"), n))
        n = torch.cat((up(n), skips.pop()), dim=1)
        n = self.dec1(act(self.dec1b, act(self.dec1a, n)))
        return x - n, {}
