"""The Grain graph every split is read through: windows -> (seeded per-epoch shuffle) -> global batches of
windows -> this process's rows, read + normalised -> prefetch in ``workers`` processes (or in-process).

Elements are whole batches computed from their batch index alone, so the batches do not depend on the
number of workers, and a :class:`grain.DatasetIterator`'s ``get_state``/``set_state`` resumes an epoch
exactly. Framework-neutral: Grain is imported only when a loader runs, because ``import grain`` loads
JAX's profiler whenever JAX is installed (this package imports neither JAX nor torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sar_jax.data.preprocess import normalize
from sar_jax.data.sampling import block_shuffled
from sar_jax.data.sources import SceneSource

if TYPE_CHECKING:
    import grain


def _absl_flags_parsed() -> None:
    """Grain's worker processes read absl flags, which only ``absl.app`` parses: mark them parsed (with their
    defaults) when the program is not an absl app (ours are argparse CLIs)."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class ReadPatches:
    """A global batch of windows -> this process's rows as normalised NHWC float32 patches.

    ``pad_to`` repeats the last window of a short batch (one compiled shape for evaluation); no-data
    pixels (``valid`` false) become 0, the value the zero margins of GRD products normalise to.
    ``targets`` (``train.target`` clean / other_look): the same window of each scene's target is
    normalised with the same params into a second channel.
    """

    def __init__(self, scenes: Sequence[SceneSource], patch: int, params: dict[str, Any], *,
                 shard: tuple[int, int] = (0, 1), pad_to: int | None = None,
                 targets: Sequence[SceneSource] | None = None) -> None:
        self.scenes = list(scenes)
        self.sources = [self.scenes] + ([list(targets)] if targets is not None else [])
        self.patch = patch
        self.params = params
        self.shard = shard
        self.pad_to = pad_to

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, np.int64).reshape(-1, 3)
        if self.pad_to is not None and len(windows) < self.pad_to:
            windows = np.concatenate([windows, np.repeat(windows[-1:], self.pad_to - len(windows), 0)])
        index, count = self.shard
        if count > 1:
            windows = np.array_split(windows, count)[index]
        p = self.patch
        out = np.empty((len(windows), p, p, len(self.sources)), np.float32)
        for k, (scene, row, col) in enumerate(windows.tolist()):
            for c, sources in enumerate(self.sources):
                values, valid = sources[scene].read((row, col, p, p))
                x = normalize(np.where(valid, values, np.float32(1.0)), self.params)
                out[k, ..., c] = np.where(valid, x, np.float32(0.0))
        return out


class PatchLoader:
    """Batches of one split, epoch by epoch, through Grain.

    ``windows(epoch)`` gives the windows of an epoch (a fixed grid, or that epoch's random draw);
    ``shuffle`` permutes them with a seed of ``(seed, epoch)``; ``shuffle_block`` orders them block by block
    instead (:func:`sar_jax.data.sampling.block_shuffled`, also for random windows); ``drop_last``
    (training) drops a short last batch, otherwise it is padded to full size (:meth:`valid_counts` says
    how many rows are real).
    ``shard=(index, count)``: each process reads only its own rows of every global batch.
    """

    def __init__(self, windows: Callable[[int], np.ndarray], n_windows: int, read: ReadPatches,
                 batch_size: int, *, shuffle: bool, seed: int, drop_last: bool, workers: int = 0,
                 prefetch: int = 2, shuffle_block: int | None = None) -> None:
        if batch_size % read.shard[1]:
            raise ValueError(f"batch size {batch_size} does not split evenly over {read.shard[1]} processes")
        self.windows = windows
        self.n_windows = n_windows
        self.read = read
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.shuffle_block = shuffle_block
        self.seed = seed
        self.drop_last = drop_last
        self.workers = workers
        self.prefetch = prefetch

    def __len__(self) -> int:
        n, b = self.n_windows, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def valid_counts(self) -> list[int]:
        """Real (unpadded) samples in each global batch."""
        n, b = self.n_windows, self.batch_size
        return [min(b, n - k * b) for k in range(len(self))]

    def dataset(self, epoch: int) -> grain.IterDataset:
        """The Grain dataset of ``epoch``."""
        import grain

        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        windows = self.windows(epoch)
        if self.shuffle_block is not None:
            windows = block_shuffled(windows, self.shuffle_block, np.random.default_rng(seed))
        ds = grain.MapDataset.source(windows)
        if self.shuffle and self.shuffle_block is None:
            ds = ds.shuffle(seed=seed)
        ds = ds.slice(slice(0, self.n_windows)).batch(self.batch_size, drop_remainder=self.drop_last)
        ds = ds.map(self.read).to_iter_dataset(grain.ReadOptions(num_threads=1 if self.prefetch else 0,
                                                                 prefetch_buffer_size=max(self.prefetch, 1)))
        if self.workers > 0:
            _absl_flags_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.workers,
                                                             per_worker_buffer_size=max(self.prefetch, 1)))
        return ds

    def epoch(self, epoch: int) -> grain.DatasetIterator:
        """An iterator over the batches of ``epoch`` (checkpointable: ``get_state``/``set_state``; close it
        when leaving early to stop worker processes)."""
        return iter(self.dataset(epoch))
