"""Mean squared error."""

from __future__ import annotations

import torch


def mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over every element (0-d tensor)."""
    return torch.mean((x_hat - x) ** 2)


def mse_per_image(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over (C, H, W) of each image -> shape (N,)."""
    return torch.mean((x_hat - x) ** 2, dim=tuple(range(1, x.ndim)))
