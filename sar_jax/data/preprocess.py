"""SAR preprocessing: linear -> dB, percentile clip fitted on the training split, scale to [0, 1].

``preprocessing_params`` is a JSON-able dict saved with every checkpoint; :func:`denormalize`
is the exact inverse of :func:`normalize` (for values inside [vmin, vmax]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError

_MAX_FIT_SAMPLES = 4_000_000
_DB_FACTOR = {"intensity": 10.0, "amplitude": 20.0}


def to_log(data: np.ndarray, mode: str, floor: float) -> np.ndarray:
    """Linear intensity/amplitude -> dB (floored); ``log8`` values pass through."""
    if mode == "log8":
        return np.asarray(data, dtype=np.float32)
    factor = _DB_FACTOR[mode]
    return (factor * np.log10(np.maximum(np.asarray(data, np.float64), floor))).astype(np.float32)


def from_log(values: np.ndarray, mode: str) -> np.ndarray:
    """Inverse of :func:`to_log` (dB -> linear units)."""
    if mode == "log8":
        return np.asarray(values, dtype=np.float32)
    return (10.0 ** (np.asarray(values, np.float64) / _DB_FACTOR[mode])).astype(np.float32)


def fit_preprocessing(train_images: Sequence[np.ndarray], mode: str,
                      percentiles: Sequence[float], floor: float) -> dict[str, Any]:
    """Fit vmin/vmax as percentiles of the TRAINING images' log values."""
    if mode not in ("intensity", "amplitude", "log8"):
        raise SarJaxError(f"preprocessing mode '{mode}': expected intensity, amplitude or log8")
    total = sum(img.size for img in train_images)
    if total == 0:
        raise SarJaxError("no training pixels to fit the preprocessing on")
    step = max(1, total // _MAX_FIT_SAMPLES)
    sample = np.concatenate([to_log(img.reshape(-1)[::step], mode, floor) for img in train_images])
    vmin, vmax = (float(v) for v in np.percentile(sample, list(percentiles)))
    if not vmax > vmin:
        raise SarJaxError(f"training images are constant in the {percentiles} percentile range "
                          f"(vmin = vmax = {vmin:g}); nothing to learn from")
    return {"mode": mode, "vmin": vmin, "vmax": vmax, "floor": float(floor),
            "percentiles": [float(p) for p in percentiles]}


def normalize(data: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Linear units -> [0, 1] float32 with the fitted clip range."""
    y = to_log(data, params["mode"], params["floor"])
    x = (y - np.float32(params["vmin"])) / np.float32(params["vmax"] - params["vmin"])
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def denormalize(x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """[0, 1] -> the input's units (exact inverse of :func:`normalize` inside the clip range)."""
    y = np.asarray(x, np.float64) * (params["vmax"] - params["vmin"]) + params["vmin"]
    return from_log(y, params["mode"])
