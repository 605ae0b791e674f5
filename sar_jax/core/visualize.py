"""Framework-neutral figures: comparison grids for TensorBoard and PNG panels for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.files import atomic_path


def comparison_grid(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Rows of ``original | reconstruction | |difference|`` -> (rows*H, 3*W) float32 in [0, 1].

    Inputs are NHWC (first channel used) or NHW, values in [0, 1].
    """
    x = np.asarray(x, np.float32)
    x_hat = np.asarray(x_hat, np.float32)
    if x.ndim == 4:
        x, x_hat = x[..., 0], x_hat[..., 0]
    rows = [np.concatenate([a, b, np.abs(a - b)], axis=1) for a, b in zip(x, x_hat)]
    return np.clip(np.concatenate(rows, axis=0), 0.0, 1.0)


def save_reconstructions_png(x: np.ndarray, x_hat: np.ndarray, path: str | Path,
                             title: str = "") -> None:
    """A labelled figure (input, reconstruction, |difference|) a person can open."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(x, np.float32)[..., 0] if np.ndim(x) == 4 else np.asarray(x, np.float32)
    x_hat = np.asarray(x_hat, np.float32)[..., 0] if np.ndim(x_hat) == 4 else np.asarray(x_hat, np.float32)
    n = len(x)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for i in range(n):
        mse = float(np.mean((x[i] - x_hat[i]) ** 2))
        psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
        panels = [(x[i], "input"), (x_hat[i], f"reconstruction (PSNR {psnr:.2f} dB)"),
                  (np.abs(x[i] - x_hat[i]), "|difference|")]
        for ax, (img, label) in zip(axes[i], panels):
            ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0 if label != "|difference|" else None)
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    if title:
        fig.suptitle(title)
    save_figure(fig, path, dpi=100)


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> None:
    """Lay out, write ``fig`` as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
