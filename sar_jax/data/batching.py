"""Batching: seeded per-epoch shuffle, drop_last, NHWC float32 batches, background prefetch."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np


class BatchIterator:
    """Iterates a (N, H, W, C) array in batches; epoch ``e`` uses the permutation seeded by (seed, e).

    The order depends only on ``(seed, epoch)``, so a resumed run sees the same batches.
    ``pad_last`` fills a short last batch by repeating its last sample (one compiled shape for
    evaluation; :meth:`valid_counts` says how many rows are real). ``shard=(index, count)``
    yields only process ``index``'s equal share of every global batch, so each host of a
    multi-host run reads only the rows its devices consume.
    """

    def __init__(self, images: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, prefetch: int = 2, pad_last: bool = False,
                 shard: tuple[int, int] = (0, 1)) -> None:
        if batch_size % shard[1]:
            raise ValueError(f"batch size {batch_size} does not split evenly over {shard[1]} processes")
        self.images = images
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.prefetch = prefetch
        self.pad_last = pad_last
        self.shard = shard

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch``."""
        n = len(self.images)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def valid_counts(self) -> list[int]:
        """Real (unpadded) samples in each global batch."""
        n = len(self.images)
        return [min(self.batch_size, n - b * self.batch_size) for b in range(len(self))]

    def _batches(self, epoch: int, start: int = 0) -> Iterator[np.ndarray]:
        order = self.order(epoch)
        index, count = self.shard
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.pad_last and len(idx) < self.batch_size:
                idx = np.concatenate([idx, np.repeat(idx[-1:], self.batch_size - len(idx))])
            if count > 1:
                idx = np.array_split(idx, count)[index]
            yield np.ascontiguousarray(self.images[idx], dtype=np.float32)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[np.ndarray]:
        """Batches of one epoch from batch ``start`` on (to resume mid-epoch), produced
        ``prefetch`` ahead on a background thread."""
        if self.prefetch <= 0:
            yield from self._batches(epoch, start)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        done = object()

        def put(item: object) -> bool:
            # Never block forever: the consumer may have stopped reading (loop left early).
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for batch in self._batches(epoch, start):
                    if not put(batch):
                        return
                put(done)
            except BaseException as exc:  # surfaced in the consumer
                put(exc)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=1.0)
