"""Shared inference helpers: load a run for inference, jitted encode/decode/reconstruct, units,
and the evaluation metrics that are not training losses (MS-SSIM, ENL, mean preservation).

MS-SSIM lives in :mod:`sar_jax.metrics.ssim` (imported here for this module's callers).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sar_jax.core.config import config_from_dict
from sar_jax.core.errors import SarJaxError
from sar_jax.metrics.ssim import ms_ssim_per_image, ms_ssim_window  # noqa: F401
from sar_jax.nn.models import SARAutoencoder
from sar_jax.ops.micro_batches import map_micro_batches
from sar_jax.training import checkpointing

LATENT_DTYPES = {"float16": np.float16, "float32": np.float32}
LINEAR_UNITS = ("intensity", "amplitude")


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedRun:
    """A checkpoint ready for inference."""

    model: SARAutoencoder
    variables: dict[str, Any]  # {"params", "batch_stats"}
    config: dict[str, Any]
    preprocessing_params: dict[str, Any]
    metadata: dict[str, Any]
    run_dir: Path
    which: str
    epoch: int
    state: Any  # the full restored TrainState (step, optimizer and plateau states, ...)


def load_run(run_dir: str | Path, which: str = "best") -> LoadedRun:
    """Restore the ``best`` (or ``latest``) checkpoint of a sar_jax run directory, with the
    config and preprocessing_params it was trained with. Always float32 compute."""
    from sar_jax.training.state import create_train_state

    path = Path(run_dir)
    if not path.exists():
        raise SarJaxError(f"checkpoint {path}: no such run directory")
    if not path.is_dir():
        raise SarJaxError(f"checkpoint {path}: not a directory; expected a sar_jax run directory")
    meta = checkpointing.read_metadata(path, which)
    for key in ("config", "preprocessing_params"):
        if key not in meta:
            raise SarJaxError(f"checkpoint {path}: its metadata has no '{key}'")
    config = config_from_dict(meta["config"], f"{path} (checkpoint config)")
    model = SARAutoencoder.from_config(config["model"])
    # shapes only: initialising the real state op by op takes seconds on CPU
    abstract = jax.eval_shape(lambda: create_train_state(model, config))
    state, meta = checkpointing.restore(path, abstract, which)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables)
    return LoadedRun(model, variables, config, dict(meta["preprocessing_params"]), meta, path, which,
                     int(meta.get("epoch", int(state.epoch))), state)


# --------------------------------------------------------------------------- jitted model calls


@functools.cache
def _jitted(model: SARAutoencoder) -> dict[str, Callable]:
    # eval mode is per sample, so each runs in micro-batches on CPU (sar_jax.ops.micro_batches)
    def encode(variables, x):
        return map_micro_batches(
            lambda b: model.apply(variables, b, train=False, method=SARAutoencoder.encode),
            x, x.shape[1] * x.shape[2])

    def decode(variables, z):
        return map_micro_batches(
            lambda b: model.apply(variables, b.astype(jnp.float32), train=False, method=SARAutoencoder.decode),
            z, z.shape[1] * z.shape[2] * model.DOWNSAMPLING**2)

    def reconstruct(variables, x):
        return map_micro_batches(lambda b: model.apply(variables, b, train=False), x, x.shape[1] * x.shape[2])

    return {"encode": jax.jit(encode), "decode": jax.jit(decode), "reconstruct": jax.jit(reconstruct)}


def encode_fn(model: SARAutoencoder) -> Callable:
    """``f(variables, x NHWC [0,1]) -> z`` (jitted, float32)."""
    return _jitted(model)["encode"]


def decode_fn(model: SARAutoencoder) -> Callable:
    """``f(variables, z) -> x_hat`` in [0, 1] (jitted; z of any float dtype)."""
    return _jitted(model)["decode"]


def reconstruct_fn(model: SARAutoencoder) -> Callable:
    """``f(variables, x) -> (x_hat, z)`` (jitted)."""
    return _jitted(model)["reconstruct"]


def batched(fn: Callable[[np.ndarray], Any], data: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Apply ``fn`` to fixed-size batches of ``data`` (the last padded by repetition, so one
    compiled shape); returns the outputs' leaves concatenated, padding rows dropped."""
    outs: list[list[np.ndarray]] = []
    n = len(data)
    for start in range(0, n, batch_size):
        batch = np.asarray(data[start:start + batch_size])
        valid = len(batch)
        if valid < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - valid, axis=0)])
        leaves = fn(batch)
        leaves = leaves if isinstance(leaves, (tuple, list)) else (leaves,)
        outs.append([np.asarray(leaf)[:valid] for leaf in leaves])
    return [np.concatenate(parts) for parts in zip(*outs)]


# --------------------------------------------------------------------------- units


def resolve_units(params: dict[str, Any], is_8bit: bool, units: str | None = None,
                  what: str = "input") -> dict[str, Any]:
    """The preprocessing params to use for an input, with ``mode`` set to the input's units.

    A checkpoint trained on intensity works on amplitude and vice versa: both go through the
    same dB scale (10 log10 I = 20 log10 A), so only ``mode`` changes. An 8-bit log-scaled view
    (``log8``) has no known calibration to dB, so it only goes with a ``log8`` checkpoint.
    ``units`` (intensity, amplitude, log8) overrides what the input's dtype suggests (uint8 ->
    log8, anything else -> the checkpoint's linear units).
    """
    mode = params["mode"]
    if units in (None, "auto"):
        units = "log8" if is_8bit else (mode if mode in LINEAR_UNITS else None)
        if units is None:
            raise SarJaxError(f"{what}: the checkpoint was trained on 8-bit log-scaled images (log8) but "
                              "this input is not 8-bit; pass --units log8 if its values are such a view")
    if units not in LINEAR_UNITS + ("log8",):
        raise SarJaxError(f"--units {units}: expected intensity, amplitude or log8")
    if (units == "log8") != (mode == "log8"):
        trained = "8-bit log-scaled views (log8)" if mode == "log8" else f"linear {mode}"
        raise SarJaxError(f"{what}: holds {'8-bit log-scaled values (log8)' if units == 'log8' else units} but the "
                          f"checkpoint was trained on {trained}; there is no calibrated mapping between "
                          "them (use --units to say what the values are, or a matching checkpoint)")
    return dict(params, mode=units)


# --------------------------------------------------------------------------- SAR statistics


def to_power(linear: np.ndarray, units: str) -> np.ndarray:
    """Values on which ENL is computed: intensity (amplitude squared); log8 values as they are
    (an 8-bit log view has no calibration back to linear units)."""
    v = np.asarray(linear, np.float64)
    return v * v if units == "amplitude" else v


def homogeneous_windows(power: np.ndarray, valid: np.ndarray | None = None, count: int = 3,
                        window: int | None = None) -> list[tuple[int, int, int]]:
    """The ``count`` non-overlapping square windows (row, col, size) of lowest coefficient of
    variation (std / mean) of ``power``; windows with clipped pixels (``valid`` False) are
    avoided when others exist. Windows are ``min(H, W) // 4`` px (8 to 32), on a half-window grid."""
    h, w = power.shape
    size = window or int(np.clip(min(h, w) // 4, 8, 32))
    size = min(size, h, w)
    step = max(1, size // 2)
    cands = []
    for r in range(0, h - size + 1, step):
        for c in range(0, w - size + 1, step):
            block = power[r:r + size, c:c + size]
            mean = float(block.mean())
            std = float(block.std())
            if mean <= 0 or std <= 0:
                continue
            clean = valid is None or bool(valid[r:r + size, c:c + size].all())
            cands.append((not clean, std / mean, r, c))
    cands.sort()
    chosen: list[tuple[int, int, int]] = []
    for _, _, r, c in cands:
        if all(abs(r - r2) >= size or abs(c - c2) >= size for r2, c2, _ in chosen):
            chosen.append((r, c, size))
            if len(chosen) == count:
                break
    return chosen


def enl(power: np.ndarray, windows: list[tuple[int, int, int]]) -> float | None:
    """Equivalent number of looks mean^2 / var, averaged over the windows (None without any)."""
    values = []
    for r, c, s in windows:
        block = np.asarray(power[r:r + s, c:c + s], np.float64)
        var = block.var()
        if var > 0:
            values.append(block.mean() ** 2 / var)
    return float(np.mean(values)) if values else None


def sar_statistics(x_lin: np.ndarray, x_hat_lin: np.ndarray, units: str,
                   valid: np.ndarray | None = None) -> dict[str, Any]:
    """ENL of input and reconstruction on the input's most homogeneous windows, their ratio
    (recon / input, > 1 = smoother), and the mean-preservation ratio mean(recon) / mean(input),
    all in the data's units."""
    p_in, p_out = to_power(x_lin, units), to_power(x_hat_lin, units)
    windows = homogeneous_windows(p_in, valid)
    enl_in, enl_out = enl(p_in, windows), enl(p_out, windows)
    mean_in = float(np.mean(np.asarray(x_lin, np.float64)))
    return {
        "enl_input": enl_in, "enl_recon": enl_out,
        "enl_ratio": (enl_out / enl_in) if (enl_in and enl_out is not None) else None,
        "mean_ratio": float(np.mean(np.asarray(x_hat_lin, np.float64))) / mean_in if mean_in > 0 else None,
        "enl_windows": [list(w) for w in windows],
    }


def compression_ratio(image_shape: tuple[int, int], latent_shape: tuple[int, ...], input_bits: int,
                      latent_dtype: str) -> float:
    """Input bits / latent bits at the stored latent precision."""
    latent_bits = int(np.prod(latent_shape)) * np.dtype(LATENT_DTYPES[latent_dtype]).itemsize * 8
    return float(image_shape[0] * image_shape[1] * input_bits) / latent_bits
