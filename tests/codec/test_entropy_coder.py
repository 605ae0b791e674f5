"""The range coder over coding tables (sar_jax.codec.entropy_coder): exact round trips, escapes,
and a coded size at the information content."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.codec.entropy_coder import decode, encode, ideal_bits
from sar_jax.codec.tables import CodingTables, gaussian_tables, quantize_pmfs, scale_indexes
from sar_jax.core.errors import SarJaxError

INT32 = np.iinfo(np.int32)


def _tables(seed: int, k: int, max_length: int = 40) -> CodingTables:
    rng = np.random.default_rng(seed)
    pmfs = [rng.dirichlet(np.full(int(n), 0.5)) for n in rng.integers(1, max_length, k)]
    return quantize_pmfs(pmfs, rng.uniform(1e-9, 1e-2, k), rng.integers(-30, 30, k))


def _values(rng: np.random.Generator, t: CodingTables, index: np.ndarray) -> np.ndarray:
    """Mostly in-range values, ~5% escapes just below or above the range, far away, or at the int32
    ends (the first two values)."""
    inside = t.offsets[index] + (rng.random(index.shape) * t.lengths[index]).astype(np.int64)
    far = rng.choice(np.array([INT32.min, INT32.max, -70000, 70000, -1, 1]), index.shape)
    near = np.where(rng.random(index.shape) < 0.5, t.offsets[index] - rng.integers(1, 5, index.shape),
                    t.offsets[index] + t.lengths[index] + rng.integers(0, 5, index.shape))
    choice = rng.random(index.shape)
    values = np.where(choice < 0.95, inside, np.where(choice < 0.98, near, far))
    values.flat[:2] = INT32.min, INT32.max
    return values


@pytest.mark.parametrize(("seed", "k", "shape"), [(0, 1, (500,)), (1, 7, (3, 17, 11)), (2, 300, (2, 40, 40, 3))])
def test_round_trip_is_exact_with_escapes(seed, k, shape):
    rng = np.random.default_rng(seed)
    t = _tables(seed, k)
    index = rng.integers(0, k, shape)
    values = _values(rng, t, index)
    rel = values - t.offsets[index]
    assert ((rel < 0) | (rel >= t.lengths[index])).sum() > 10  # escapes are exercised
    assert values.min() == INT32.min and values.max() == INT32.max
    data = encode(values, index, t)
    out = decode(data, index, t)
    assert out.dtype == np.int32 and out.shape == shape and (out == values).all()
    assert encode(values.astype(np.int64), index.astype(np.uint16), t) == data  # dtypes do not matter


def test_escapes_only_and_a_single_symbol():
    t = quantize_pmfs([np.array([1.0])], 1e-9, [5])
    values = np.array([5, 4, 6, -(2**31), 2**31 - 1, 5, 0, 1 << 20], dtype=np.int64)
    index = np.zeros(values.shape, dtype=np.int32)
    assert (decode(encode(values, index, t), index, t) == values).all()
    assert (decode(encode(values[:1], index[:1], t), index[:1], t) == [5]).all()


def test_empty_arrays():
    t = _tables(3, 4)
    index = np.zeros((0, 5), dtype=np.int32)
    data = encode(np.zeros((0, 5), dtype=np.int32), index, t)
    assert data == b""
    out = decode(data, index, t)
    assert out.shape == (0, 5) and out.dtype == np.int32


@pytest.mark.parametrize("k", [1, 16])
def test_coded_size_is_the_information_content(k):
    """200k symbols drawn from the tables' own distributions cost their ideal bits within 1%."""
    rng = np.random.default_rng(k)
    t = _tables(10 + k, k)
    index = rng.integers(0, k, 200_000)
    values = np.empty(index.size, dtype=np.int64)
    for j in range(k):
        at = index == j
        p = t.probabilities(j)[:-1]  # the symbols (the escape is drawn with its value later)
        values[at] = t.offsets[j] + rng.choice(p.size, at.sum(), p=p / p.sum())
    data = encode(values, index, t)
    ideal = ideal_bits(values, index, t)
    assert ideal > 1e5
    assert 0.99 * ideal <= 8 * len(data) <= 1.01 * ideal + 64
    assert (decode(data, index, t) == values).all()


def test_gaussian_latent_round_trip_at_its_estimated_size():
    scale_table = np.exp(np.linspace(np.log(0.11), np.log(256), 64))
    t = gaussian_tables(scale_table)
    rng = np.random.default_rng(4)
    scales = np.exp(rng.uniform(np.log(0.05), np.log(40), (2, 8, 8, 16)))
    index = scale_indexes(scales, scale_table)
    values = np.rint(rng.normal(size=scales.shape) * scales).astype(np.int32)
    data = encode(values, index, t)
    assert (decode(data, index, t) == values).all()
    ideal = ideal_bits(values, index, t)
    assert abs(8 * len(data) - ideal) <= 0.01 * ideal + 64


def test_bad_input_is_refused():
    t = _tables(5, 3)
    values = np.zeros((4, 4), dtype=np.int32)
    with pytest.raises(SarJaxError, match="table_index must be in 0..2"):
        encode(values, np.full((4, 4), 3), t)
    with pytest.raises(SarJaxError, match="shape"):
        encode(values, np.zeros((4, 3), dtype=np.int32), t)
    with pytest.raises(SarJaxError, match="integers"):
        encode(values.astype(np.float32), np.zeros((4, 4), dtype=np.int32), t)
    with pytest.raises(SarJaxError, match="int32"):
        encode(np.array([2**31]), np.array([0]), t)
    with pytest.raises(SarJaxError, match="32-bit words"):
        decode(b"abc", np.zeros(3, dtype=np.int32), t)
