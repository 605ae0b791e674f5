"""Classical SAR despeckling filters on linear intensity: boxcar (multilook), Lee, refined Lee, Frost, Kuan.

No maintained Python library that this project can depend on provides them in a usable form: pyroSAR
brings a whole processing stack, and findpeaks, which has Lee, refined Lee, Frost and Kuan, loops over
the pixels in Python and rounds its output to integers, so it is slow and unusable on float
intensity. They are written here, vectorised on numpy/scipy, from their published formulas:
J.-S. Lee, "Digital image enhancement and noise filtering by use of local statistics", IEEE TPAMI
2(2), 1980; J.-S. Lee, "Refined filtering of image noise using local statistics", CGIP 15, 1981;
V. S. Frost et al., "A model for radar images and its application to adaptive digital filtering of
multiplicative noise", IEEE TPAMI 4(2), 1982; D. T. Kuan et al., "Adaptive noise smoothing filter for
images with signal-dependent noise", IEEE TPAMI 7(2), 1985. Borders are reflected (scipy "reflect").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import correlate, uniform_filter

from sar_jax.core.errors import SarJaxError


def _check(intensity: np.ndarray, window: int) -> np.ndarray:
    if window < 1 or window % 2 == 0:
        raise SarJaxError(f"window = {window} is invalid; expected an odd size >= 1")
    img = np.asarray(intensity, np.float64)
    if img.ndim != 2:
        raise SarJaxError(f"expected a 2-D intensity image, got shape {img.shape}")
    return img


def _cu2(looks: float) -> float:
    """The squared coefficient of variation of ``looks``-look intensity speckle."""
    if not looks > 0:
        raise SarJaxError(f"looks = {looks} is invalid; expected a number > 0")
    return 1.0 / looks


def _local_stats(img: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (non-negative) variance over each ``window x window`` neighbourhood."""
    mean = uniform_filter(img, size=window, mode="reflect")
    return mean, np.maximum(uniform_filter(img * img, size=window, mode="reflect") - mean * mean, 0.0)


def _ci2(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """The local squared coefficient of variation ``var / mean**2`` (0 where the mean is 0)."""
    return np.divide(var, mean * mean, out=np.zeros_like(var), where=mean > 0)


def _lee_weight(ci2: np.ndarray, cu2: float) -> np.ndarray:
    """``1 - cu2 / ci2`` clipped to [0, 1]: 0 (the local mean) where the neighbourhood varies no more than
    speckle does, towards 1 (the pixel) on edges and point targets."""
    with np.errstate(divide="ignore"):
        ratio = np.divide(cu2, ci2, out=np.full_like(ci2, np.inf), where=ci2 > 0)
    return np.clip(1.0 - ratio, 0.0, 1.0)


def _kuan_weight(ci2: np.ndarray, cu2: float) -> np.ndarray:
    """``(1 - cu2 / ci2) / (1 + cu2)`` clipped to [0, 1]: :func:`_lee_weight` over ``1 + cu2``, at most
    ``1 / (1 + cu2)`` on edges and point targets."""
    return _lee_weight(ci2, cu2) / (1.0 + cu2)


def _local_mmse(intensity: np.ndarray, window: int, looks: float,
                weight: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """``m + k (I - m)`` with the window's mean ``m`` and ``k = weight(Ci**2, Cu**2)``: Lee's and Kuan's form."""
    img = _check(intensity, window)
    cu2 = _cu2(looks)
    mean, var = _local_stats(img, window)
    return (mean + weight(_ci2(mean, var), cu2) * (img - mean)).astype(np.float32)


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
    """Lee's filter for multiplicative speckle of ``looks`` looks, in the form the filter surveys call Lee
    (Lopes et al., IEEE TGRS 28(6), 1990): ``m + k (I - m)`` with ``k = 1 - Cu**2 / Ci**2`` clipped to [0, 1].

    ``m`` and ``Ci**2 = v / m**2`` are the window's mean and squared coefficient of variation, ``Cu**2 =
    1 / looks`` the speckle's: ``k = 0`` (the local mean) where the window varies no more than speckle
    does, ``k -> 1`` (the pixel kept) on edges and point targets. Lee's linearisation of the
    multiplicative model; :func:`kuan` is its exact linear MMSE weight, smaller by ``1 / (1 + Cu**2)``.

    Args:
        intensity: (H, W) linear intensity.
        window: odd window size.
        looks: the input's equivalent number of looks (> 0).

    Returns:
        (H, W) float32 filtered intensity.
    """
    return _local_mmse(intensity, window, looks, _lee_weight)


def kuan(intensity: np.ndarray, window: int, looks: float) -> np.ndarray:
    """Kuan's filter: ``m + k (I - m)`` with ``k = (1 - Cu**2 / Ci**2) / (1 + Cu**2)``.

    ``Ci**2 = v / m**2`` is the window's squared coefficient of variation, ``Cu**2 = 1 / looks`` the
    speckle's. This is the exact linear MMSE weight of the multiplicative model; :func:`lee` is the
    linearised ``1 - Cu**2 / Ci**2``, which keeps more of the pixel (by ``1 + Cu**2``: twice as much at
    one look) where the window varies more than speckle does.

    Args:
        intensity: (H, W) linear intensity.
        window: odd window size.
        looks: the input's equivalent number of looks (> 0).

    Returns:
        (H, W) float32 filtered intensity.
    """
    return _local_mmse(intensity, window, looks, _kuan_weight)


def _half_windows(window: int) -> np.ndarray:
    """The 8 edge-aligned half windows of refined Lee, (8, window, window) booleans, in the order
    left, right (vertical edge), top-right, bottom-left (main diagonal), top, bottom (horizontal edge),
    top-left, bottom-right (anti-diagonal); each holds its edge line, window (window + 1) / 2 pixels."""
    dy, dx = np.mgrid[-(window // 2):window // 2 + 1, -(window // 2):window // 2 + 1]
    return np.stack([dx <= 0, dx >= 0, dx >= dy, dx <= dy, dy <= 0, dy >= 0, dx + dy <= 0, dx + dy >= 0])


def refined_lee(intensity: np.ndarray, window: int, looks: float) -> np.ndarray:
    """Lee's refined (edge-directed) filter: the MMSE weight of :func:`kuan` on an edge-aligned half window.

    In each ``window x window`` neighbourhood (Lee's is 7 x 7), 3 x 3 sub-windows of size ``s`` (3 for
    windows 5 and 7, 5 for 9 and 11) spaced to span it give a 3 x 3 array of means; its largest gradient of
    4 (vertical, horizontal and the two diagonal edges) gives the edge's direction, and of the two
    sub-windows across the edge the one whose mean is closer to the centre's picks the side: the
    statistics are those of that half window (edge line included), the output ``m + k (I - m)``.

    Args:
        intensity: (H, W) linear intensity.
        window: odd window size >= 3.
        looks: the input's equivalent number of looks (> 0).

    Returns:
        (H, W) float32 filtered intensity.
    """
    img = _check(intensity, window)
    if window < 3:
        raise SarJaxError(f"window = {window} is invalid for refined Lee; expected an odd size >= 3")
    cu2 = _cu2(looks)
    sub = 2 * (window // 4) + 1
    step = (window - sub) // 2
    h, w = img.shape
    padded = np.pad(uniform_filter(img, size=sub, mode="reflect"), step, mode="symmetric")
    m = [[padded[i * step:i * step + h, j * step:j * step + w] for j in range(3)] for i in range(3)]
    gradients = np.stack([m[0][2] + m[1][2] + m[2][2] - m[0][0] - m[1][0] - m[2][0],
                          m[0][1] + m[0][2] + m[1][2] - m[1][0] - m[2][0] - m[2][1],
                          m[2][0] + m[2][1] + m[2][2] - m[0][0] - m[0][1] - m[0][2],
                          m[0][0] + m[0][1] + m[1][0] - m[1][2] - m[2][1] - m[2][2]])
    direction = np.argmax(np.abs(gradients), axis=0)
    sides = ((m[1][0], m[1][2]), (m[0][2], m[2][0]), (m[0][1], m[2][1]), (m[0][0], m[2][2]))
    choice = np.zeros(img.shape, np.int64)
    for d, (a, b) in enumerate(sides):
        far = np.abs(a - m[1][1]) > np.abs(b - m[1][1])
        choice = np.where(direction == d, 2 * d + far, choice)
    mean, mean_sq = np.zeros_like(img), np.zeros_like(img)
    for k, mask in enumerate(_half_windows(window)):
        kernel = mask / mask.sum()
        sel = choice == k
        mean[sel] = correlate(img, kernel, mode="reflect")[sel]
        mean_sq[sel] = correlate(img * img, kernel, mode="reflect")[sel]
    var = np.maximum(mean_sq - mean * mean, 0.0)
    return (mean + _kuan_weight(_ci2(mean, var), cu2) * (img - mean)).astype(np.float32)


def frost(intensity: np.ndarray, window: int, looks: float, damping: float = 1.0) -> np.ndarray:
    """Frost's filter: each pixel the mean of its window weighted by ``exp(-a d)``, ``d`` the Euclidean
    distance to the centre and ``a = damping * Ci**2 / Cu**2`` (Frost's ``K Ci**2`` with ``K = damping *
    looks``, so that ``damping`` sets the decay on pure speckle whatever the looks: a ~ damping there,
    large on edges and point targets, which are kept).

    Exact, not approximated: the window's offsets are grouped by distance, and each group's shifted
    images are summed and weighted with one ``exp`` per pixel, so a 7 x 7 window costs 10 exponentials.

    Args:
        intensity: (H, W) linear intensity.
        window: odd window size.
        looks: the input's equivalent number of looks (> 0).
        damping: the damping factor (>= 0; 0 is the boxcar).

    Returns:
        (H, W) float32 filtered intensity.
    """
    img = _check(intensity, window)
    cu2 = _cu2(looks)
    if not damping >= 0:
        raise SarJaxError(f"damping = {damping} is invalid; expected a number >= 0")
    mean, var = _local_stats(img, window)
    decay = damping * _ci2(mean, var) / cu2
    r = window // 2
    h, w = img.shape
    padded = np.pad(img, r, mode="symmetric")
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    dist2 = dy * dy + dx * dx
    num, den = np.zeros_like(img), np.zeros_like(img)
    for d2 in np.unique(dist2):
        ring = sum(padded[r + y:r + y + h, r + x:r + x + w] for y, x in zip(dy[dist2 == d2], dx[dist2 == d2]))
        weight = np.exp(-decay * np.sqrt(d2))
        num += weight * ring
        den += weight * np.count_nonzero(dist2 == d2)
    return (num / den).astype(np.float32)
