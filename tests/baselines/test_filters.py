"""Boxcar and Lee filters on speckle whose statistics are known."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.baselines.filters import boxcar, lee
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
