"""Synthetic SAR scenes: the embedded default dataset, deterministic from the seed.

A reflectivity map of field-like regions (warped Voronoi cells, half of them with smooth
texture, the rest flat), bright point scatterers and lines (roads dark, ridges bright),
times multiplicative Gamma speckle of ``looks`` looks with unit mean, on intensity.
"""

from __future__ import annotations

import numpy as np


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


def synthetic_scene(seed: int | tuple[int, ...], size: int, looks: float) -> tuple[np.ndarray, np.ndarray]:
    """One speckled scene: returns ``(intensity, reflectivity)``, both (size, size) float32.

    Speckle is Gamma(looks, 1/looks) on intensity (unit mean, ENL = looks).
    """
    rng = np.random.default_rng(seed)
    refl = synthetic_reflectivity(rng, size)
    speckle = rng.gamma(shape=looks, scale=1.0 / looks, size=refl.shape)
    return (refl * speckle).astype(np.float32), refl


def synthetic_scenes_with_reflectivity(num_scenes: int, size: int, looks: float,
                                       seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``num_scenes`` ``(speckled intensity, speckle-free reflectivity)`` pairs, scene ``i`` seeded by
    ``(seed, i)``: the reflectivity is the ground truth a despeckling or radiometry check compares with."""
    return [synthetic_scene((seed, i), size, looks) for i in range(num_scenes)]


def synthetic_scenes(num_scenes: int, size: int, looks: float, seed: int) -> list[np.ndarray]:
    """The speckled intensity scenes of :func:`synthetic_scenes_with_reflectivity`."""
    return [intensity for intensity, _ in synthetic_scenes_with_reflectivity(num_scenes, size, looks, seed)]
