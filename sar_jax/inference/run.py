"""Shared inference helpers: load a run for inference, jitted encode/decode/reconstruct, input units
and the clip-range check. MS-SSIM lives in :mod:`sar_jax.metrics.ssim`, SAR statistics and bit rates
in :mod:`sar_jax.metrics.sar_stats`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sar_jax.core.config import config_from_dict
from sar_jax.core.errors import SarJaxError
from sar_jax.nn.models import SARAutoencoder
from sar_jax.nn.registry import build_model
from sar_jax.ops.micro_batches import map_micro_batches
from sar_jax.training import checkpointing

#: Inputs with more of their valid pixels outside the checkpoint's clip range are refused.
MAX_CLIPPED = 0.05


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedRun:
    """A checkpoint ready for inference."""

    model: Any  # the config's model.kind (sar_jax.nn.registry)
    variables: dict[str, Any]  # {"params", "batch_stats"}
    config: dict[str, Any]
    preprocessing_params: dict[str, Any]
    metadata: dict[str, Any]
    run_dir: Path
    which: str
    epoch: int
    state: Any  # the full restored TrainState (step, optimizer and plateau states, ...)


def check_not_torch(path: Path) -> None:
    """A PyTorch checkpoint (a ``sar_torch_ref`` ``.pt`` file or run directory) gets the exact
    conversion command to run instead of a dead end."""
    pt = None
    if path.is_file() and path.suffix == ".pt":
        pt = path
    elif path.is_dir() and not any(p.is_dir() for p in (path / "checkpoints").glob("*")):  # no Orbax steps
        pt = next((d / name for d in (path / "checkpoints", path) for name in ("best.pt", "last.pt")
                   if (d / name).is_file()), None)
    if pt is not None:
        out = (path if path.is_dir() else path.with_suffix("")).with_name(f"{path.stem}-jax")
        raise SarJaxError(f"checkpoint {path}: a PyTorch (sar_torch_ref) checkpoint; convert it to a sar_jax run "
                          f"first: python -m sar_jax.convert --from-torch {pt} --out {out}")


def load_run(run_dir: str | Path, which: str = "best") -> LoadedRun:
    """Restore the ``best`` (or ``latest``) checkpoint of a sar_jax run directory, with the
    config and preprocessing_params it was trained with. Always float32 compute."""
    from sar_jax.training.state import create_train_state

    path = Path(run_dir)
    check_not_torch(path)
    if not path.exists():
        raise SarJaxError(f"checkpoint {path}: no such run directory")
    if not path.is_dir():
        raise SarJaxError(f"checkpoint {path}: not a directory; expected a sar_jax run directory")
    meta = checkpointing.read_metadata(path, which)
    for key in ("config", "preprocessing_params"):
        if key not in meta:
            raise SarJaxError(f"checkpoint {path}: its metadata has no '{key}'")
    config = config_from_dict(meta["config"], f"{path} (checkpoint config)")
    model = build_model(config["model"])
    # shapes only: initialising the real state op by op takes seconds on CPU
    abstract = jax.eval_shape(lambda: create_train_state(model, config))
    state, meta = checkpointing.restore(path, abstract, which)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), variables)
    return LoadedRun(model, variables, config, dict(meta["preprocessing_params"]), meta, path, which,
                     int(meta.get("epoch", int(state.epoch))), state)


# --------------------------------------------------------------------------- jitted model calls


@functools.cache
def _jitted(model: Any) -> dict[str, Callable]:
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

    def image(variables, x):
        return map_micro_batches(lambda b: jnp.clip(model.apply(variables, b, train=False)[0], 0.0, 1.0), x,
                                 x.shape[1] * x.shape[2])

    return {"encode": jax.jit(encode), "decode": jax.jit(decode), "reconstruct": jax.jit(reconstruct),
            "image": jax.jit(image)}


def encode_fn(model: SARAutoencoder) -> Callable:
    """``f(variables, x NHWC [0,1]) -> z`` (jitted, float32)."""
    return _jitted(model)["encode"]


def decode_fn(model: SARAutoencoder) -> Callable:
    """``f(variables, z) -> x_hat`` in [0, 1] (jitted; z of any float dtype)."""
    return _jitted(model)["decode"]


def reconstruct_fn(model: SARAutoencoder) -> Callable:
    """``f(variables, x) -> (x_hat, z)`` of the baseline autoencoder (jitted)."""
    return _jitted(model)["reconstruct"]


def image_fn(model: Any) -> Callable:
    """``f(variables, x) -> x_hat`` clipped to [0, 1], any ``model.kind`` in eval mode (jitted; the codecs
    round their latents as their bitstreams do)."""
    return _jitted(model)["image"]


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


# --------------------------------------------------------------------------- units and clipping


def input_params(params: dict[str, Any], units: str, what: str = "input") -> dict[str, Any]:
    """The checkpoint's preprocessing params for an input whose values are in ``units``.

    Intensity, amplitude and dB share the checkpoint's dB scale (10 log10 I = 20 log10 A), so only
    ``mode`` changes. An 8-bit log view (``log8``) has no known calibration to dB, so it only goes
    with a ``log8`` checkpoint and vice versa.
    """
    mode = params["mode"]
    if (units == "log8") != (mode == "log8"):
        trained = "8-bit log-scaled views (log8)" if mode == "log8" else f"{mode} (a dB scale)"
        held = "8-bit log-scaled values (log8)" if units == "log8" else units
        raise SarJaxError(f"{what}: holds {held} but the checkpoint was trained on {trained}; there is no "
                          "calibrated mapping between them (give the input's units, or use a matching checkpoint)")
    return dict(params, mode=units)


def open_input(path: str | Path, params: dict[str, Any], units: str | None = None, band: int | None = None,
               strict: bool = False) -> tuple[Any, dict[str, Any]]:
    """``(raster, params)``: ``path`` opened through the reader and the checkpoint's params for its units.

    ``units`` None lets the reader decide (uint8 -> log8, uint16 -> amplitude, float from the file's
    metadata, else an error asking for them); complex and I/Q input then follow the checkpoint:
    |z|^2 for an intensity (or dB) checkpoint, |z| for an amplitude one.
    """
    from sar_jax.data.readers import open_raster

    raster = open_raster(path, band=band, units=units or "auto", strict=strict)
    if units is None and raster.phase_dropped and params["mode"] == "amplitude":
        raster = open_raster(path, band=band, units="amplitude", strict=strict)
    return raster, input_params(params, raster.units, f"input {path}")


def clip_range(params: dict[str, Any]) -> tuple[float, float]:
    """The clip range [vmin, vmax] in the units of ``params["mode"]``."""
    from sar_jax.data.preprocess import denormalize

    lo, hi = denormalize(np.array([0.0, 1.0], np.float32), params, bias_correction=False)
    return float(lo), float(hi)


def _db(values: np.ndarray, units: str) -> np.ndarray:
    if units in ("db", "log8"):
        return values
    return (10 if units == "intensity" else 20) * np.log10(np.maximum(values, 1e-30))


def _range_text(lo: float, hi: float, units: str) -> str:
    return f"[{lo:.1f}, {hi:.1f}]" + (" (8-bit levels)" if units == "log8" else " dB")


def check_clipping(values: np.ndarray, params: dict[str, Any], what: str, allow: bool,
                   max_fraction: float = MAX_CLIPPED) -> float:
    """The fraction of the valid ``values`` outside the checkpoint's clip range. Above ``max_fraction``
    (a calibration or units mismatch) a SarJaxError naming both ranges, or a warning when ``allow``."""
    if values.size == 0:
        return 0.0
    lo, hi = clip_range(params)
    frac = float(np.mean((values < lo) | (values > hi)))
    if frac > max_fraction:
        units = params["mode"]
        p1, p99 = np.percentile(_db(values.astype(np.float64), units), [1, 99])
        message = (f"{what}: {100 * frac:.1f}% of its pixels fall outside the checkpoint's clip range "
                   f"{_range_text(params['vmin'], params['vmax'], units)} (the input spans "
                   f"{_range_text(p1, p99, units)}, 1st-99th percentile): a calibration or units mismatch")
        if not allow:
            raise SarJaxError(message + "; pass --allow-clipping to use it anyway")
        warnings.warn(message, stacklevel=2)
    return frac


