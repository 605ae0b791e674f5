"""Classical SAR despeckling filters on linear intensity: boxcar (multilook) and Lee.

No maintained Python library that this project can depend on provides the Lee filter (pyroSAR and
findpeaks bring whole processing stacks), so it is written here from its published formula
(J.-S. Lee, "Digital image enhancement and noise filtering by use of local statistics",
IEEE TPAMI 2(2), 1980), on top of scipy's uniform filter.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from sar_jax.core.errors import SarJaxError


def _check(intensity: np.ndarray, window: int) -> np.ndarray:
    if window < 1 or window % 2 == 0:
        raise SarJaxError(f"window = {window} is invalid; expected an odd size >= 1")
    img = np.asarray(intensity, np.float64)
    if img.ndim != 2:
        raise SarJaxError(f"expected a 2-D intensity image, got shape {img.shape}")
    return img


def boxcar(intensity: np.ndarray, window: int) -> np.ndarray:
    """Mean over a ``window x window`` neighbourhood (reflected at the borders).

    Args:
        intensity: (H, W) linear intensity.
        window: odd window size.

    Returns:
        (H, W) float32 filtered intensity; on L-look speckle its ENL is ``window**2 * L``.
    """
    return uniform_filter(_check(intensity, window), size=window, mode="reflect").astype(np.float32)


def lee(intensity: np.ndarray, window: int, looks: float) -> np.ndarray:
    """Lee's minimum-mean-square-error filter for multiplicative speckle of ``looks`` looks.

    With local mean ``m`` and variance ``v`` over the window and the speckle's squared coefficient
    of variation ``cu2 = 1 / looks``, the output is ``m + k (I - m)`` with
    ``k = max(0, (v - m**2 cu2) / (v (1 + cu2)))``: ``k = 0`` (the local mean) where the window
    looks like pure speckle, ``k -> 1`` (the pixel kept) on edges and point targets.

    Args:
        intensity: (H, W) linear intensity.
        window: odd window size.
        looks: the input's equivalent number of looks (> 0).

    Returns:
        (H, W) float32 filtered intensity.
    """
    img = _check(intensity, window)
    if not looks > 0:
        raise SarJaxError(f"looks = {looks} is invalid; expected a number > 0")
    cu2 = 1.0 / looks
    mean = uniform_filter(img, size=window, mode="reflect")
    var = np.maximum(uniform_filter(img * img, size=window, mode="reflect") - mean * mean, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(var > 0, (var - mean * mean * cu2) / (var * (1.0 + cu2)), 0.0)
    k = np.clip(k, 0.0, 1.0)
    return (mean + k * (img - mean)).astype(np.float32)
