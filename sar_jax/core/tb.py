"""TensorBoard logging (tensorboardX) shared by both trainers: scalars, image grids, histograms.

Takes numpy arrays only, so the JAX trainer and the PyTorch reference write identical tags.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.visualize import comparison_grid

SCALAR_TAGS = {"train_loss": "train/loss", "train_mse": "train/mse", "train_ssim": "train/ssim",
               "train_psnr": "train/psnr", "train_bpp": "train/bpp", "train_aux_loss": "train/aux_loss",
               "val_loss": "val/loss", "val_mse": "val/mse", "val_ssim": "val/ssim", "val_psnr": "val/psnr",
               "val_bpp": "val/bpp", "lr": "lr",
               "epoch_seconds": "epoch_seconds", "train_images_per_second": "train_images_per_second"}


def open_writer(run_dir: str | Path, purge_step: int | None = None) -> Any:
    """A tensorboardX SummaryWriter on ``<run>/tb``; ``purge_step`` drops events logged at or
    after that epoch by an earlier, interrupted run (used when resuming)."""
    from tensorboardX import SummaryWriter

    return SummaryWriter(str(Path(run_dir) / "tb"), purge_step=purge_step)


def log_epoch(writer: Any, record: dict[str, Any], epoch: int) -> None:
    """One scalar per training.log key (see SCALAR_TAGS)."""
    for key, tag in SCALAR_TAGS.items():
        if record.get(key) is not None:
            writer.add_scalar(tag, float(record[key]), epoch)


def log_reconstructions(writer: Any, x: np.ndarray, x_hat: np.ndarray, epoch: int) -> None:
    """The original | reconstruction | |difference| grid of the fixed samples."""
    writer.add_image("reconstructions", comparison_grid(x, x_hat), epoch, dataformats="HW")


def log_histograms(writer: Any, prefix: str, named: Iterable[tuple[str, np.ndarray]], epoch: int) -> None:
    """Histograms ``<prefix>/<name>`` of weights or gradients."""
    for name, values in named:
        writer.add_histogram(f"{prefix}/{name}", np.asarray(values, np.float32).ravel(), epoch)


def log_memory(writer: Any, stats: dict[str, float], epoch: int) -> None:
    """Device memory figures in MB (only where the device reports them)."""
    for name, value in stats.items():
        writer.add_scalar(f"memory/{name}", float(value), epoch)
