"""Synthetic SAR scenes: the embedded default dataset, deterministic from the seed.

A reflectivity map of field-like regions (warped Voronoi cells, half of them with smooth
texture, the rest flat), bright point scatterers and lines (roads dark, ridges bright),
times multiplicative speckle of ``looks`` looks with unit mean, on intensity: Gamma(L, 1/L) draws
(uncorrelated, ENL = L), or with ``psf_oversampling`` q > 1 the intensity of L averaged looks of
complex circular Gaussian scattering seen through a separable sinc PSF oversampled q times, as in
an oversampled SLC (neighbouring pixels correlated, each pixel still Gamma(L, 1/L)).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from sar_jax.core.errors import SarJaxError


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise (FFT filter of width ``scale`` px)."""
    white = rng.standard_normal((size, size))
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    gain = np.exp(-0.5 * (ky**2 + kx**2) * (2 * np.pi * scale) ** 2)
    out = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(size, size))
    return (out - out.mean()) / (out.std() + 1e-12)


def _draw_line(refl: np.ndarray, rng: np.random.Generator, value: float, width: int) -> None:
    size = refl.shape[0]
    y0, y1 = rng.uniform(0, size, 2)
    t = np.linspace(0.0, 1.0, 4 * size)
    ys = y0 + (y1 - y0) * t + 0.05 * size * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t)
    xs = t * (size - 1)
    if rng.random() < 0.5:
        ys, xs = xs, ys
    for dy in range(-(width // 2), width - width // 2):
        r = np.clip(np.round(ys + dy).astype(int), 0, size - 1)
        c = np.clip(np.round(xs).astype(int), 0, size - 1)
        refl[r, c] = value


def synthetic_reflectivity(rng: np.random.Generator, size: int) -> np.ndarray:
    """A clean reflectivity map (linear intensity units, mean roughly 0.1-1)."""
    n_fields = int(rng.integers(6, 14))
    seeds = rng.uniform(0, size, (n_fields, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    warp_y = 0.06 * size * _smooth_noise(rng, size, size / 16)
    warp_x = 0.06 * size * _smooth_noise(rng, size, size / 16)
    wy, wx = yy + warp_y, xx + warp_x
    dist = np.stack([(wy - sy) ** 2 + (wx - sx) ** 2 for sy, sx in seeds])
    labels = np.argmin(dist, axis=0)
    levels = np.exp(rng.uniform(np.log(0.02), np.log(1.0), n_fields))
    textured = rng.random(n_fields) < 0.5
    texture = np.exp(0.35 * _smooth_noise(rng, size, 4.0))
    refl = levels[labels] * np.where(textured[labels], texture, 1.0)
    for _ in range(int(rng.integers(1, 4))):
        _draw_line(refl, rng, value=float(rng.choice([0.005, 3.0])), width=int(rng.integers(2, 5)))
    n_points = max(1, size * size // 6000)
    pr = rng.integers(0, size, n_points)
    pc = rng.integers(0, size, n_points)
    refl[pr, pc] = rng.uniform(5.0, 50.0, n_points)
    return refl.astype(np.float32)


def psf_kernel(oversampling: float) -> np.ndarray:
    """The 1-D PSF of a scene sampled ``oversampling`` (q >= 1) times its resolution: ``sinc(n / q)``
    times a Hamming taper over ``|n| <= 4q`` (low sidelobes), with unit energy (sum of squares 1) so
    that filtering unit-variance white scattering keeps unit variance. q = 1 is ``[1.0]`` (no blur)."""
    if not oversampling >= 1:
        raise SarJaxError(f"psf_oversampling = {oversampling} is invalid; expected a number >= 1")
    half = int(np.ceil(4 * oversampling)) if oversampling > 1 else 0
    n = np.arange(-half, half + 1, dtype=np.float64)
    h = np.sinc(n / oversampling) * (0.54 + 0.46 * np.cos(np.pi * n / (half + 1)))
    return h / np.sqrt(np.sum(h * h))


def speckle(rng: np.random.Generator, shape: tuple[int, int], looks: float,
            psf_oversampling: float = 1.0) -> np.ndarray:
    """Unit-mean multiplicative intensity speckle of ``looks`` looks, (H, W) float64.

    ``psf_oversampling`` 1: independent Gamma(looks, 1/looks) draws (any looks > 0). q > 1: each of the
    ``looks`` (an integer) looks is white complex circular Gaussian scattering of unit power filtered by
    the separable :func:`psf_kernel` (exact, without border effects), and the looks' intensities
    are averaged: every pixel is still Gamma(looks, 1/looks), neighbours are correlated.
    """
    if not looks > 0:
        raise SarJaxError(f"looks = {looks} is invalid; expected a number > 0")
    h = psf_kernel(psf_oversampling)
    if h.size == 1:
        return rng.gamma(shape=looks, scale=1.0 / looks, size=shape)
    if looks != int(looks):
        raise SarJaxError(f"looks = {looks} is invalid with psf_oversampling = {psf_oversampling}; correlated "
                          "speckle averages independent looks, so looks must be an integer")
    psf = np.outer(h, h)
    pad = h.size - 1
    out = np.zeros(shape)
    for _ in range(int(looks)):
        white = rng.standard_normal((2, shape[0] + pad, shape[1] + pad)) / np.sqrt(2.0)
        field = fftconvolve(white[0] + 1j * white[1], psf, mode="valid")
        out += field.real ** 2 + field.imag ** 2
    return out / int(looks)


def synthetic_scene(seed: int | tuple[int, ...], size: int, looks: float,
                    psf_oversampling: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One speckled scene: returns ``(intensity, reflectivity)``, both (size, size) float32.

    Speckle is :func:`speckle` on intensity (unit mean, ENL = looks); ``psf_oversampling`` > 1 correlates it.
    """
    rng = np.random.default_rng(seed)
    refl = synthetic_reflectivity(rng, size)
    return (refl * speckle(rng, refl.shape, looks, psf_oversampling)).astype(np.float32), refl


def synthetic_scene_pair(seed: int | tuple[int, ...], size: int, looks: float,
                         psf_oversampling: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two independent speckle realisations of one reflectivity, for Noise2Noise-style training:
    ``(look_a, look_b, reflectivity)``, (size, size) float32; ``look_a`` is :func:`synthetic_scene`'s
    intensity for the same arguments."""
    rng = np.random.default_rng(seed)
    refl = synthetic_reflectivity(rng, size)
    look_a, look_b = (refl * speckle(rng, refl.shape, looks, psf_oversampling) for _ in range(2))
    return look_a.astype(np.float32), look_b.astype(np.float32), refl


def synthetic_scenes_with_reflectivity(num_scenes: int, size: int, looks: float, seed: int,
                                       psf_oversampling: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``num_scenes`` ``(speckled intensity, speckle-free reflectivity)`` pairs, scene ``i`` seeded by
    ``(seed, i)``: the reflectivity is the ground truth a despeckling or radiometry check compares with."""
    return [synthetic_scene((seed, i), size, looks, psf_oversampling) for i in range(num_scenes)]


def synthetic_scenes(num_scenes: int, size: int, looks: float, seed: int,
                     psf_oversampling: float = 1.0) -> list[np.ndarray]:
    """The speckled intensity scenes of :func:`synthetic_scenes_with_reflectivity`."""
    return [intensity for intensity, _ in
            synthetic_scenes_with_reflectivity(num_scenes, size, looks, seed, psf_oversampling)]
