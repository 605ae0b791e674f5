"""Boxcar, Lee, refined Lee, Frost and Kuan filters on speckle whose statistics are known."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.baselines.filters import boxcar, frost, kuan, lee, refined_lee
from sar_jax.core.errors import SarJaxError


def _enl(x: np.ndarray) -> float:
    return float(x.mean() ** 2 / x.var())


def _speckle(looks: float, shape=(512, 512), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(looks, 1.0 / looks, shape)


@pytest.mark.parametrize("window", [5, 7])
@pytest.mark.parametrize("looks", [1.0, 4.0])
def test_boxcar_enl_is_window_area_times_looks(window, looks):
    out = boxcar(_speckle(looks), window)[window:-window, window:-window]
    assert _enl(out) == pytest.approx(window * window * looks, rel=0.08)
    assert out.mean() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("window", [5, 7])
def test_lee_smooths_homogeneous_speckle_and_keeps_its_mean(window):
    looks = 4.0
    img = _speckle(looks)
    out = lee(img, window, looks)[window:-window, window:-window]
    # k = 0 wherever the window's variation is at or below the speckle's, and small elsewhere on a
    # homogeneous area: the output ENL lies between the input's and the boxcar's.
    assert 0.5 * window * window * looks < _enl(out) <= 1.05 * window * window * looks
    assert out.mean() == pytest.approx(1.0, abs=0.01)


def test_lee_keeps_an_edge_that_the_boxcar_blurs():
    looks = 16.0
    refl = np.ones((128, 128))
    refl[:, 64:] = 20.0
    img = refl * _speckle(looks, refl.shape, seed=1)
    box, lf = boxcar(img, 7), lee(img, 7, looks)
    # mean absolute error against the truth in the columns next to the edge
    cols = slice(60, 68)
    assert np.abs(lf[:, cols] - refl[:, cols]).mean() < 0.5 * np.abs(box[:, cols] - refl[:, cols]).mean()


def test_filters_refuse_bad_arguments():
    with pytest.raises(SarJaxError, match="window = 4"):
        boxcar(np.ones((8, 8)), 4)
    with pytest.raises(SarJaxError, match="looks = 0"):
        lee(np.ones((8, 8)), 5, 0)
    with pytest.raises(SarJaxError, match="2-D"):
        lee(np.ones((2, 8, 8)), 5, 1)
    for f in (kuan, refined_lee, frost):
        with pytest.raises(SarJaxError, match="window = 6"):
            f(np.ones((8, 8)), 6, 1.0)
        with pytest.raises(SarJaxError, match="looks = -1"):
            f(np.ones((8, 8)), 5, -1.0)
    with pytest.raises(SarJaxError, match="window = 1 is invalid for refined Lee"):
        refined_lee(np.ones((8, 8)), 1, 1.0)
    with pytest.raises(SarJaxError, match="damping = -0.5"):
        frost(np.ones((8, 8)), 5, 1.0, damping=-0.5)


ADAPTIVE = {"lee": lee, "kuan": kuan, "refined_lee": refined_lee, "frost": frost}


def _frost_kernel_gain(window: int, damping: float) -> float:
    """ENL gain of the fixed kernel exp(-damping d) over the window: Frost's on speckle whose Ci^2 = Cu^2."""
    r = window // 2
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    w = np.exp(-damping * np.hypot(dy, dx))
    return float(w.sum() ** 2 / (w * w).sum())


@pytest.mark.parametrize("window", [5, 7])
@pytest.mark.parametrize("looks", [1.0, 4.0])
@pytest.mark.parametrize("name", list(ADAPTIVE))
def test_adaptive_filters_keep_the_mean_and_gain_enl_on_homogeneous_speckle(name, looks, window):
    img = _speckle(looks, (256, 256), seed=2)
    out = ADAPTIVE[name](img, window, looks)
    assert out.dtype == np.float32 and out.shape == img.shape
    inner, ref = out[window:-window, window:-window], img[window:-window, window:-window]
    assert inner.mean() == pytest.approx(ref.mean(), rel=0.02)
    gain = _enl(inner) / looks
    # upper bounds: the equally weighted window (Lee, Kuan), its half window of w (w + 1) / 2 pixels
    # (refined Lee), the kernel at Ci^2 = Cu^2 (Frost); the adaptive weight gives back some of that where
    # the window's own statistics fluctuate above the speckle's (Lee 1 + Cu^2 times more of it than Kuan:
    # at one look 0.46-0.54 of the window's gain against Kuan's 0.79-0.84), but keeps well above the input's
    upper = {"lee": window**2, "kuan": window**2, "refined_lee": window * (window + 1) / 2,
             "frost": _frost_kernel_gain(window, 1.0)}[name]
    lower = {"lee": 0.4, "kuan": 0.5, "refined_lee": 0.3, "frost": 0.6}[name] * upper
    assert lower < gain <= upper, (gain, lower, upper)
    assert gain > 5  # several times the input's ENL


def test_lee_weighs_the_pixel_1_plus_cu2_times_more_than_kuan():
    from scipy.ndimage import uniform_filter

    looks = 2.0
    img = _speckle(looks, (64, 64), seed=3) * np.linspace(0.5, 5.0, 64)
    img[31, 21] = 40.0  # a point target: there Ci^2 >> Cu^2 and both weights are far from 0
    mean = uniform_filter(img, size=5, mode="reflect")
    lf, kf = lee(img, 5, looks).astype(np.float64), kuan(img, 5, looks).astype(np.float64)
    # the same local mean and clipped 1 - Cu^2 / Ci^2; Kuan divides it by 1 + Cu^2
    np.testing.assert_allclose(lf - mean, (1.0 + 1.0 / looks) * (kf - mean), rtol=1e-4, atol=1e-5 * img.max())
    assert np.abs(lf - kf).max() > 0.2 * img.max() / 2  # so they differ where the pixel is kept
    assert np.abs(lf - img)[31, 21] < np.abs(kf - img)[31, 21]


def _edge_width(out: np.ndarray) -> float:
    """10%-90% width (px) of the row-averaged profile across the vertical step at column 63.5."""
    p = out.astype(np.float64).mean(axis=0)
    z = (p - p[16:40].mean()) / (p[-40:-16].mean() - p[16:40].mean())

    def crossing(level: float) -> float:
        i = 40 + int(np.nonzero(z[40:88] >= level)[0][0])
        return i - 1 + (level - z[i - 1]) / (z[i] - z[i - 1])

    return crossing(0.9) - crossing(0.1)


def test_edge_directed_filters_keep_a_step_edge_the_boxcar_blurs():
    looks = 4.0
    refl = np.ones((256, 128))
    refl[:, 64:] = 10.0
    img = refl * _speckle(looks, refl.shape, seed=1)
    assert _edge_width(refl) == pytest.approx(0.8)  # an ideal step: both crossings between columns 63 and 64
    box = _edge_width(boxcar(img, 7))
    assert box > 0.7 * 7  # a ramp over the window: 0.8 * 7 = 5.6 px on the noise-free step
    for name, f in ADAPTIVE.items():
        out = f(img, 7, looks)
        # the plateaus keep their level
        assert out[:, 8:48].mean() == pytest.approx(1.0, rel=0.03)
        assert out[:, 80:120].mean() == pytest.approx(10.0, rel=0.03)
        width = _edge_width(out)
        if name != "kuan":  # Lee's weight reaches 1 where the window straddles the edge: ~1 px
            assert width <= 2.0, (name, width)
        else:
            # Kuan weighs the pixel by at most 1 / (1 + Cu^2) and the bright side's Ci^2 drops to
            # Cu^2 within the window, so a 7 x 7 window widens the step to ~3.7 px, a 5 x 5 one to ~2.5
            assert width < 0.75 * box and _edge_width(f(img, 5, looks)) <= 3.0, (name, width)


@pytest.mark.parametrize("diagonal", ["main", "anti"])
def test_refined_lee_keeps_diagonal_edges(diagonal):
    looks = 4.0
    yy, xx = np.mgrid[0:96, 0:96]
    side = xx - yy if diagonal == "main" else xx + yy - 95
    refl = np.where(side > 0, 10.0, 1.0)
    img = refl * _speckle(looks, refl.shape, seed=4)
    band = (np.abs(side) <= 3) & (yy > 8) & (yy < 88) & (xx > 8) & (xx < 88)
    err = {name: np.abs(out - refl)[band].mean() / refl[band].mean() for name, out in
           (("refined_lee", refined_lee(img, 7, looks)), ("lee", lee(img, 7, looks)), ("boxcar", boxcar(img, 7)))}
    assert err["refined_lee"] < 0.5 * err["lee"] < err["boxcar"], err


def test_refined_lee_directions_commute_with_transposition_and_mirroring():
    img = _speckle(1.0, (48, 48), seed=5) * np.exp(_speckle(1.0, (48, 48), seed=6))
    out = refined_lee(img, 7, 1.0)
    np.testing.assert_allclose(refined_lee(img.T, 7, 1.0), out.T, rtol=1e-6)
    np.testing.assert_allclose(refined_lee(img[:, ::-1], 7, 1.0), out[:, ::-1], rtol=1e-6)


@pytest.mark.parametrize("name", ["boxcar", *ADAPTIVE])
def test_noise_free_constant_input_stays_constant(name):
    f = (lambda x, w, L: boxcar(x, w)) if name == "boxcar" else ADAPTIVE[name]
    for value in (0.0, 0.37, 120.0):
        out = f(np.full((24, 40), value), 7, 2.0)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, np.float32(value), rtol=1e-6, atol=0)
