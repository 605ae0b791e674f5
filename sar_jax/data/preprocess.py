"""SAR preprocessing: linear -> dB, percentile clip fitted on the training split, scale to [0, 1].

``preprocessing_params`` is a JSON-able dict saved with every checkpoint:
``mode`` (intensity | amplitude | db | log8: the units of the values), ``vmin``/``vmax`` (the clip
range in dB, or in 8-bit levels for log8), ``floor``, ``percentiles`` and ``log_bias_db``.

The model works in dB, and the exponential of a mean log is not the linear mean: for L-look
intensity speckle E[10 log10 I] = 10 log10 E[I] + 10 log10(e) (psi(L) - ln L), about -2.5 dB at
L = 1. A reconstruction that smooths speckle out (what an MSE-trained model does with speckle it
cannot predict) therefore comes back too dark in linear units. ``log_bias_db`` is that offset,
measured on the training split (see :func:`fit_preprocessing`); :func:`denormalize` adds it by
default. Without the correction, :func:`denormalize` is the exact inverse of :func:`normalize`
inside [vmin, vmax].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError

MODES = ("intensity", "amplitude", "db", "log8")
LINEAR_MODES = ("intensity", "amplitude")
_MAX_FIT_SAMPLES = 4_000_000
_DB_FACTOR = {"intensity": 10.0, "amplitude": 20.0}
#: Side of the local windows the log bias is measured in: small enough that texture adds little,
#: large enough that the window mean's own small-sample bias stays below ~1% of the correction.
BIAS_WINDOW = 16


def to_log(data: np.ndarray, mode: str, floor: float) -> np.ndarray:
    """Linear intensity/amplitude -> dB (floored); ``db`` and ``log8`` values pass through."""
    if mode not in _DB_FACTOR:
        return np.asarray(data, dtype=np.float32)
    factor = _DB_FACTOR[mode]
    return (factor * np.log10(np.maximum(np.asarray(data, np.float64), floor))).astype(np.float32)


def from_log(values: np.ndarray, mode: str) -> np.ndarray:
    """Inverse of :func:`to_log` (dB -> linear units)."""
    if mode not in _DB_FACTOR:
        return np.asarray(values, dtype=np.float32)
    return (10.0 ** (np.asarray(values, np.float64) / _DB_FACTOR[mode])).astype(np.float32)


def _masks(train_images: Sequence[np.ndarray], valid: Sequence[np.ndarray] | None) -> list[np.ndarray]:
    if any(np.ndim(img) != 2 for img in train_images):
        raise SarJaxError("train_images: expected 2-D arrays (training regions or sampled windows), got shapes "
                          f"{sorted({np.shape(img) for img in train_images if np.ndim(img) != 2})[:3]}")
    if valid is None:
        return [np.ones(img.shape, bool) for img in train_images]
    if len(valid) != len(train_images) or any(v.shape != img.shape for v, img in zip(valid, train_images)):
        raise SarJaxError("valid: expected one mask of each training image's shape")
    return [np.asarray(v, bool) for v in valid]


def _blocks(a: np.ndarray, window: int) -> np.ndarray:
    """The whole ``window`` x ``window`` blocks of a 2-D array, one per row (edges that do not fill one dropped)."""
    h, w = (s // window * window for s in a.shape)
    return a[:h, :w].reshape(h // window, window, w // window, window).swapaxes(1, 2).reshape(-1, window * window)


def _bias_blocks(train_images: Sequence[np.ndarray], masks: Sequence[np.ndarray], window: int) -> np.ndarray:
    """The ``window`` x ``window`` blocks whose pixels are all valid, float64 (n, window^2); every k-th
    block when there are more than ``_MAX_FIT_SAMPLES`` pixels."""
    oks = [_blocks(m, window).all(axis=1) for m in masks]
    step = max(1, sum(int(ok.sum()) for ok in oks) * window * window // _MAX_FIT_SAMPLES)
    parts = [_blocks(np.asarray(img), window)[ok][::step] for img, ok in zip(train_images, oks)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, window * window))


def _log_bias_of_blocks(lin: np.ndarray, mode: str, floor: float) -> float:
    """The median over blocks of ``factor log10(linear mean) - mean dB`` (0 without blocks). The median
    keeps blocks with point targets or edges, whose spread is not speckle, from inflating it."""
    if len(lin) == 0:
        return 0.0
    factor = _DB_FACTOR[mode]
    mean_db = to_log(lin, mode, floor).astype(np.float64).mean(axis=1)
    per_block = factor * np.log10(np.maximum(lin.mean(axis=1), floor)) - mean_db
    return float(np.median(per_block))


def fit_preprocessing(train_images: Sequence[np.ndarray], mode: str, percentiles: Sequence[float],
                      floor: float, valid: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Fit vmin/vmax as percentiles of the TRAINING images' valid log values, and the log bias.

    ``train_images``: 2-D arrays, the training regions or windows sampled from them (the log bias
    needs windows of at least ``BIAS_WINDOW`` px; loose pixels are not enough). ``valid``: one bool
    mask per image (False: nodata, NaN/Inf, 0 in linear units), or None when every pixel is valid.

    ``log_bias_db`` (linear modes; 0 for db/log8): in every ``BIAS_WINDOW`` square block whose pixels
    are all valid, ``factor log10(linear mean) - mean dB``; the median over
    blocks, in the data's own dB (factor 10 intensity, 20 amplitude). On pure L-look intensity
    speckle it is 10 log10(e) (ln L - psi(L)), 2.51 dB at L = 1; texture inside the blocks adds a
    little (synthetic scenes at L = 1: 2.67 dB), point targets and edges hardly anything.
    ``log_bias_db_by_units`` also holds it for the other linear unit (a checkpoint applied to
    amplitude input when trained on intensity, or the reverse), measured on the same blocks.
    """
    if mode not in MODES:
        raise SarJaxError(f"preprocessing mode '{mode}': expected one of {', '.join(MODES)}")
    masks = _masks(train_images, valid)
    total = sum(int(m.sum()) for m in masks)
    if total == 0:
        raise SarJaxError("no valid training pixels to fit the preprocessing on")
    step = max(1, total // _MAX_FIT_SAMPLES)
    sample = np.concatenate([to_log(np.asarray(img)[m][::step], mode, floor) for img, m in zip(train_images, masks)])
    vmin, vmax = (float(v) for v in np.percentile(sample, list(percentiles)))
    if not vmax > vmin:
        raise SarJaxError(f"constant image: the training pixels are constant in the {percentiles} percentile range "
                          f"(vmin = vmax = {vmin:g}); nothing to learn from")
    params = {"mode": mode, "vmin": vmin, "vmax": vmax, "floor": float(floor),
              "percentiles": [float(p) for p in percentiles], "log_bias_db": 0.0,
              # the training data against its own fit: the share of its valid pixels that clipping moves
              "clipped_fraction": float(np.mean((sample < vmin) | (sample > vmax)))}
    if mode in LINEAR_MODES:
        blocks = _bias_blocks(train_images, masks, BIAS_WINDOW)
        other = "amplitude" if mode == "intensity" else "intensity"
        if len(blocks) == 0:
            warnings.warn(f"log_bias_db = 0: the training images hold no all-valid {BIAS_WINDOW}x{BIAS_WINDOW} "
                          "block to measure the log-domain bias in", stacklevel=2)
        params["log_bias_db"] = _log_bias_of_blocks(blocks, mode, floor)
        params["log_bias_db_by_units"] = {
            mode: params["log_bias_db"],
            other: _log_bias_of_blocks(np.sqrt(blocks) if other == "amplitude" else blocks**2, other, floor)}
    return params


def log_bias_db(params: dict[str, Any]) -> float:
    """The correction :func:`denormalize` adds for ``params["mode"]`` (0 for db/log8 and old params)."""
    mode = params["mode"]
    if mode not in LINEAR_MODES:
        return 0.0
    by_units = params.get("log_bias_db_by_units") or {}
    return float(by_units.get(mode, params.get("log_bias_db", 0.0)))


def without_log_bias(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` for a model that predicts the log of the mean (trained on the clean target or with the
    Gamma likelihood): :func:`denormalize` then adds nothing, in every unit."""
    out = dict(params, log_bias_db=0.0)
    if "log_bias_db_by_units" in params:
        out["log_bias_db_by_units"] = dict.fromkeys(params["log_bias_db_by_units"], 0.0)
    return out


def normalize(data: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Values in ``params["mode"]`` units -> [0, 1] float32 with the fitted clip range."""
    y = to_log(data, params["mode"], params["floor"])
    x = (y - np.float32(params["vmin"])) / np.float32(params["vmax"] - params["vmin"])
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def denormalize(x: np.ndarray, params: dict[str, Any], bias_correction: bool = True) -> np.ndarray:
    """[0, 1] -> the input's units, adding :func:`log_bias_db` in the log domain when
    ``bias_correction`` (without it: the exact inverse of :func:`normalize` inside the clip range)."""
    y = np.asarray(x, np.float64) * (params["vmax"] - params["vmin"]) + params["vmin"]
    if bias_correction:
        y = y + log_bias_db(params)
    return from_log(y, params["mode"])
