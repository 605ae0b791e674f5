"""Batching (sar_jax.data.batching.BatchIterator)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sar_jax.data.batching import BatchIterator


def _data(n=10):
    # sample k is filled with the value k, so a batch tells which samples it holds
    return np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None, None], (n, 4, 4, 1)).copy()


def _ids(batches):
    return [b[:, 0, 0, 0].astype(int).tolist() for b in batches]


def test_shuffle_is_seeded_per_epoch():
    it = BatchIterator(_data(), 3, shuffle=True, seed=5, prefetch=0)
    again = BatchIterator(_data(), 3, shuffle=True, seed=5, prefetch=0)
    other_seed = BatchIterator(_data(), 3, shuffle=True, seed=6, prefetch=0)
    e0, e1 = _ids(it.epoch(0)), _ids(it.epoch(1))
    assert e0 == _ids(again.epoch(0)) and e1 == _ids(again.epoch(1))
    assert e0 == _ids(it.epoch(0))  # the same epoch again gives the same order
    assert e0 != e1
    assert e0 != _ids(other_seed.epoch(0))
    np.testing.assert_array_equal(it.order(3), again.order(3))
    assert sorted(it.order(3)) == list(range(10))


def test_no_shuffle_keeps_order():
    it = BatchIterator(_data(7), 3, shuffle=False, prefetch=0)
    assert _ids(it.epoch(0)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert _ids(it.epoch(4)) == _ids(it.epoch(0))


@pytest.mark.parametrize("n, bs, drop_last, expected_len, last_size", [
    (10, 3, False, 4, 1), (10, 3, True, 3, 3), (9, 3, True, 3, 3), (9, 3, False, 3, 3),
    (2, 3, True, 0, None), (2, 3, False, 1, 2), (1, 1, True, 1, 1),
])
def test_drop_last_and_len(n, bs, drop_last, expected_len, last_size):
    it = BatchIterator(_data(n), bs, shuffle=True, seed=0, drop_last=drop_last, prefetch=0)
    batches = list(it.epoch(0))
    assert len(it) == expected_len == len(batches)
    if last_size is not None:
        assert len(batches[-1]) == last_size
        assert all(len(b) == bs for b in batches[:-1])
    if drop_last:
        ids = [i for b in _ids(batches) for i in b]
        assert len(ids) == len(set(ids)) == (n // bs) * bs


def test_every_sample_once_per_epoch():
    it = BatchIterator(_data(23), 4, shuffle=True, seed=1, prefetch=0)
    for epoch in range(4):
        ids = [i for b in _ids(it.epoch(epoch)) for i in b]
        assert sorted(ids) == list(range(23))


def test_batches_are_nhwc_float32_contiguous():
    images = _data(6).astype(np.float64)
    for batch in BatchIterator(images, 4, shuffle=True, seed=0, prefetch=0).epoch(0):
        assert batch.dtype == np.float32 and batch.ndim == 4 and batch.shape[1:] == (4, 4, 1)
        assert batch.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("prefetch", [1, 2, 5])
def test_prefetch_yields_the_same_batches(prefetch):
    rng = np.random.default_rng(0)
    images = rng.random((11, 8, 8, 1)).astype(np.float32)
    base = BatchIterator(images, 3, shuffle=True, seed=2, prefetch=0)
    pre = BatchIterator(images, 3, shuffle=True, seed=2, prefetch=prefetch)
    for epoch in (0, 1):
        a, b = list(base.epoch(epoch)), list(pre.epoch(epoch))
        assert len(a) == len(b) == 4
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


class _Exploding:
    """Array-like that fails when asked for the sample ``bad``."""

    def __init__(self, n, bad):
        self.data, self.bad = _data(n), bad

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        if self.bad in np.atleast_1d(idx):
            raise RuntimeError("boom while reading sample")
        return self.data[idx]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_exception_in_production_surfaces(prefetch):
    it = BatchIterator(_Exploding(9, bad=7), 3, shuffle=False, prefetch=prefetch)
    seen = []
    with pytest.raises(RuntimeError, match="boom while reading sample"):
        for batch in it.epoch(0):
            seen.append(batch)
    assert len(seen) == 2  # the batches before the bad one were delivered


def test_leaving_an_epoch_early_stops_the_producer():
    before = threading.active_count()
    # 3 batches, 2 prefetched: after the first is taken the producer has queued the other two
    # and waits to queue its end marker when the consumer walks away
    it = BatchIterator(_data(6), 2, shuffle=False, prefetch=2)
    gen = it.epoch(0)
    first = next(gen)
    assert first.shape == (2, 4, 4, 1)
    time.sleep(0.3)  # let the producer fill the queue
    start = time.monotonic()
    gen.close()
    assert time.monotonic() - start < 0.5
    deadline = time.monotonic() + 2.0
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() == before, "prefetch thread left running"
