"""Checkpoints of the reference trainer: one ``torch.save`` dict, written atomically.

Fields: ``model``, ``optimizer``, ``scheduler`` (state_dicts), ``epoch`` (last completed, 1-based),
``best_val_loss``, ``best_epoch``, ``early_stopping`` ({best, bad_epochs}), ``config``,
``config_name``, ``preprocessing_params``, ``versions`` ({torch, python, sar_jax}).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

import sar_jax
from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import atomic_path

REQUIRED_KEYS = ("model", "optimizer", "scheduler", "epoch", "best_val_loss", "early_stopping",
                 "config", "preprocessing_params", "versions")


def versions() -> dict[str, str]:
    """Library versions recorded in every checkpoint."""
    return {"torch": str(torch.__version__), "python": platform.python_version(), "sar_jax": sar_jax.__version__}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to ``<path>.tmp`` in the same directory, then renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as exc:
        raise SarJaxError(f"checkpoint {path}: cannot write ({exc.strerror})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a missing, unreadable, corrupt or
    incomplete file raises SarJaxError naming it."""
    path = Path(path)
    if not path.is_file():
        raise SarJaxError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign files
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = [ln for ln in lines if "error:" in ln.lower()]
        reason = (detail or lines or [type(exc).__name__])[0]
        raise SarJaxError(f"checkpoint {path}: cannot be read as a PyTorch checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise SarJaxError(f"checkpoint {path}: not a sar_torch_ref checkpoint (expected a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise SarJaxError(f"checkpoint {path}: not a sar_torch_ref checkpoint (missing {', '.join(missing)})")
    return state
