"""Integer coding tables (sar_jax.codec.tables): normalised, invertible, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from sar_jax.codec.tables import CodingTables, gaussian_pmfs, gaussian_tables, quantize_pmfs, scale_indexes
from sar_jax.core.errors import SarJaxError

SCALE_TABLE = np.exp(np.linspace(np.log(0.11), np.log(256), 64))


def _random_pmfs(seed: int, k: int = 12) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pmfs = [rng.dirichlet(np.full(int(n), 0.3)) for n in rng.integers(1, 200, k)]
    pmfs[0][:] = 0.0
    pmfs[0][0] = 1.0  # a delta: every other symbol is raised to 1
    return pmfs, rng.uniform(0, 1e-3, k), rng.integers(-100, 100, k)


def _assert_invariants(t: CodingTables) -> None:
    total = 1 << t.precision
    for k in range(t.num_tables):
        used = t.freqs[k, :t.lengths[k] + 1]
        assert used.sum() == total and used.min() >= 1
        assert (t.freqs[k, t.lengths[k] + 1:] == 0).all()
        cdf = np.concatenate([[0], np.cumsum(used)])
        assert (np.diff(cdf) > 0).all() and cdf[-1] == total


@pytest.mark.parametrize("precision", [8, 12, 16])
def test_random_rows_are_normalised_positive_and_close_to_the_pmf(precision):
    pmfs, tails, offsets = _random_pmfs(precision)
    t = quantize_pmfs(pmfs, tails, offsets, precision)
    _assert_invariants(t)
    assert t.lengths.tolist() == [p.size for p in pmfs] and t.offsets.tolist() == offsets.tolist()
    assert t.freqs.shape == (len(pmfs), max(p.size for p in pmfs) + 1) and t.freqs.dtype == np.int32
    if precision == 16:  # far from the 1-per-symbol floor, each entry is its rounded share
        for k, (p, tail) in enumerate(zip(pmfs, tails)):
            ideal = np.append(p, tail) / (p.sum() + tail) * 2**16
            assert np.abs(t.freqs[k, :p.size + 1] - ideal).max() <= max(2.0, 0.01 * ideal.max())


def test_the_floor_of_one_fits_exactly_when_the_row_fills_the_precision():
    t = quantize_pmfs([np.full(255, 1e-12), np.eye(1, 255, 3)[0]], 0.0, [0, 0], precision=8)
    _assert_invariants(t)
    assert t.freqs[0].tolist() == [1] * 256 and t.freqs[1].tolist() == [1] * 256


def test_unnormalised_rows_are_rescaled_first():
    a = quantize_pmfs([np.array([1.0, 2.0, 1.0])], 0.5, [0])
    b = quantize_pmfs([np.array([0.2, 0.4, 0.2])], 0.1, [0])
    assert a.content_hash() == b.content_hash()
    assert a.freqs[0].tolist() == [14564, 29126, 14564, 7282]


def test_deterministic_and_hash_tracks_content(tmp_path):
    pmfs, tails, offsets = _random_pmfs(0)
    a, b = quantize_pmfs(pmfs, tails, offsets), quantize_pmfs([p.copy() for p in pmfs], tails, offsets)
    assert a.freqs.tobytes() == b.freqs.tobytes() and a.content_hash() == b.content_hash()
    np.savez(tmp_path / "t.npz", **a.to_arrays())
    with np.load(tmp_path / "t.npz") as z:
        c = CodingTables.from_arrays(dict(z))
    assert c.content_hash() == a.content_hash() and (c.freqs == a.freqs).all() and c.precision == 16
    arrays = a.to_arrays()
    arrays["offsets"][3] += 1
    assert CodingTables.from_arrays(arrays).content_hash() != a.content_hash()
    assert len(a.content_hash()) == 64


def test_from_arrays_refuses_broken_tables():
    arrays = gaussian_tables(SCALE_TABLE[:4]).to_arrays()
    bad = dict(arrays, freqs=arrays["freqs"].copy())
    bad["freqs"][1, 0] += 1
    with pytest.raises(SarJaxError, match="row 1 sums to 65537"):
        CodingTables.from_arrays(bad)
    with pytest.raises(SarJaxError, match="missing arrays"):
        CodingTables.from_arrays({k: v for k, v in arrays.items() if k != "offsets"})
    with pytest.raises(SarJaxError, match="int32"):
        CodingTables.from_arrays(dict(arrays, freqs=arrays["freqs"].astype(np.int64)))
    zero = dict(arrays, freqs=arrays["freqs"].copy())
    zero["freqs"][0, 0], zero["freqs"][0, 1] = 0, zero["freqs"][0, 1] + zero["freqs"][0, 0]
    with pytest.raises(SarJaxError, match=">= 1"):
        CodingTables.from_arrays(zero)


def test_quantize_pmfs_refuses_bad_rows():
    with pytest.raises(SarJaxError, match="row 1"):
        quantize_pmfs([np.ones(3), np.array([0.5, np.nan])], 0.0, [0, 0])
    with pytest.raises(SarJaxError, match="offset"):
        quantize_pmfs([np.ones(3)], 0.0, [0, 1])
    with pytest.raises(SarJaxError, match="more than 2\\*\\*8"):
        quantize_pmfs([np.ones(256)], 0.0, [0], precision=8)


def test_gaussian_pmfs_match_scipy_norm():
    pmfs, tails, offsets = gaussian_pmfs(SCALE_TABLE, tail_mass=1e-9)
    for s, p, tail, off in zip(SCALE_TABLE, pmfs, tails, offsets):
        c = int(np.ceil(s * norm.isf(0.5e-9)))
        assert off == -c and p.size == 2 * c + 1
        v = np.arange(-c, c + 1)
        # the mass of [v - 0.5, v + 0.5], from the tail on each side (exact where the cdf is near 1)
        ref = np.where(v < 0, norm.cdf(v + 0.5, scale=s) - norm.cdf(v - 0.5, scale=s),
                       norm.sf(v - 0.5, scale=s) - norm.sf(v + 0.5, scale=s))
        np.testing.assert_allclose(p, ref, rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(tail, 2 * norm.cdf(-c - 0.5, scale=s), rtol=1e-9)
        assert tail <= 1e-9 and abs(p.sum() + tail - 1) < 1e-12


def test_gaussian_tables_cost_little_over_the_ideal_pmf():
    t = gaussian_tables(SCALE_TABLE)
    _assert_invariants(t)
    pmfs, tails, _ = gaussian_pmfs(SCALE_TABLE)
    for k in (0, 20, 40, 63):
        p = np.append(pmfs[k], tails[k])
        kl = np.sum(p[p > 0] * np.log2(p[p > 0] / t.probabilities(k)[p > 0]))
        assert 0 <= kl < 0.03  # bits per symbol; the floor of 1/2**16 costs most at the widest scale
    assert t.content_hash() == gaussian_tables(SCALE_TABLE.copy()).content_hash()


def test_scale_indexes_pick_the_first_scale_not_below():
    table = np.array([0.11, 0.5, 2.0, 8.0])
    scales = np.array([[0.0, 0.11, 0.2], [0.5, 1.9, 9.0]], dtype=np.float32)
    assert scale_indexes(scales, table).tolist() == [[0, 0, 1], [1, 2, 3]]
