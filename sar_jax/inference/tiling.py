"""Overlapping tiles over a scene of any size, blended seamlessly and streamed row by row.

Geometry (:class:`TileGrid`), per axis: the scene is reflected outward by ``margin =
overlap // 2`` pixels (so its edges lie inside tiles, away from the zero padding of the
convolutions) and by whatever more the last tile needs. Tiles of ``tile`` px step by ``tile -
overlap``. An axis that fits one tile (scene + 2 margins <= tile) gets a single tile shrunk to
the next multiple of 16, so a 100 x 37 scene is not computed as 256 x 256.

Blending: every tile's reconstruction is multiplied by a separable raised-cosine window that
ramps over the ``overlap`` pixels at each end and never reaches 0; sums of weight * recon and of
weights are accumulated and divided. Across an overlap the two ramps sum to exactly 1, so
neighbouring tiles cross-fade without a visible seam.

Streaming: tiles arrive in row-major order; a rolling buffer holds only one row of tiles
(``tile x padded width``) and hands each finished band of scene rows to a writer, so memory
does not grow with the scene's height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError

MIN_WEIGHT = 1e-3


def check_tiling(tile: int, overlap: int) -> None:
    """Tile a positive multiple of 16; 0 <= overlap < tile / 2."""
    if not isinstance(tile, int) or tile < 16 or tile % 16:
        raise SarJaxError(f"--tile {tile}: expected a positive multiple of 16 (the encoder halves the"
                          " size 4 times)")
    if not isinstance(overlap, int) or overlap < 0 or 2 * overlap >= tile:
        raise SarJaxError(f"--overlap {overlap}: expected 0 <= overlap < tile / 2 = {tile / 2:g}")


def _ceil16(n: int) -> int:
    return max(16, -(-n // 16) * 16)


def _axis(length: int, tile: int, overlap: int, margin: int) -> tuple[int, int, int]:
    """(tile size, tile count, padded length) along one axis."""
    need = length + 2 * margin
    if need <= tile:
        size = _ceil16(need)
        return size, 1, size
    stride = tile - overlap
    count = math.ceil((need - tile) / stride) + 1
    return tile, count, (count - 1) * stride + tile


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a ``height x width`` scene lie (padded coordinates: scene pixel (r, c)
    is padded pixel (r + margin, c + margin))."""

    height: int
    width: int
    tile: int
    overlap: int
    margin: int
    tile_h: int
    tile_w: int
    rows: int
    cols: int
    padded_h: int
    padded_w: int

    @classmethod
    def create(cls, height: int, width: int, tile: int = 256, overlap: int = 32) -> TileGrid:
        check_tiling(tile, overlap)
        if height < 1 or width < 1:
            raise SarJaxError(f"empty scene ({height} x {width})")
        margin = overlap // 2
        th, rows, ph = _axis(height, tile, overlap, margin)
        tw, cols, pw = _axis(width, tile, overlap, margin)
        return cls(height, width, tile, overlap, margin, th, tw, rows, cols, ph, pw)

    @property
    def stride_h(self) -> int:
        return self.tile_h - self.overlap

    @property
    def stride_w(self) -> int:
        return self.tile_w - self.overlap

    @property
    def num_tiles(self) -> int:
        return self.rows * self.cols

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileGrid:
        grid = cls.create(int(d["height"]), int(d["width"]), int(d["tile"]), int(d["overlap"]))
        if grid.to_dict() != {k: int(v) for k, v in d.items() if k in grid.to_dict()}:
            raise SarJaxError("latent file: its tiling metadata is inconsistent")
        return grid

    def row_indices(self, i: int) -> np.ndarray:
        """Scene rows (reflected) of tile row ``i``."""
        start = i * self.stride_h
        return reflect_index(np.arange(start, start + self.tile_h) - self.margin, self.height)

    def col_indices(self) -> np.ndarray:
        """Scene columns (reflected) of the whole padded width."""
        return reflect_index(np.arange(self.padded_w) - self.margin, self.width)

    def window(self) -> np.ndarray:
        """The (tile_h, tile_w) blending weights."""
        return np.outer(blend_window(self.tile_h, self.overlap if self.rows > 1 else 0),
                        blend_window(self.tile_w, self.overlap if self.cols > 1 else 0))

    def border_positions(self, axis: int) -> list[int]:
        """Scene coordinates where tiles start or end along ``axis`` (0 rows, 1 cols), inside the scene."""
        n, t, s, length = ((self.rows, self.tile_h, self.stride_h, self.height) if axis == 0
                           else (self.cols, self.tile_w, self.stride_w, self.width))
        pos = {k * s - self.margin for k in range(1, n)} | {k * s + t - self.margin for k in range(n - 1)}
        return sorted(p for p in pos if 0 < p < length)


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices into ``[0, n)`` of numpy's ``pad(mode="reflect")`` (edge not repeated), any distance."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


def blend_window(size: int, overlap: int) -> np.ndarray:
    """1-D weights: raised-cosine ramps over ``overlap`` px at both ends, 1 between, >= MIN_WEIGHT.

    ``ramp[k] = (1 - cos(pi (k + 0.5) / overlap)) / 2``, so ``ramp[k] + ramp[overlap - 1 - k] = 1``.
    """
    w = np.ones(size, np.float64)
    if overlap > 0:
        k = np.arange(overlap)
        ramp = 0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / overlap)
        w[:overlap] = ramp
        w[size - overlap:] = ramp[::-1]
    return np.maximum(w, MIN_WEIGHT).astype(np.float32)


def input_tiles(grid: TileGrid, load_band: Callable[[int], np.ndarray]) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """``((i, j), tile)`` in row-major order; ``load_band(i)`` returns tile row i's padded band
    (tile_h, padded_w), read lazily one tile row at a time."""
    for i in range(grid.rows):
        band = load_band(i)
        for j in range(grid.cols):
            c0 = j * grid.stride_w
            yield (i, j), band[:, c0:c0 + grid.tile_w]


def batched_apply(items: Iterable[tuple[Any, np.ndarray]], fn: Callable[[np.ndarray], Any],
                  batch_size: int) -> Iterator[tuple[Any, tuple[np.ndarray, ...]]]:
    """Group ``(key, array)`` items into fixed-size batches (last one padded by repetition),
    apply ``fn`` (returning an array or a tuple of arrays), and yield ``(key, outputs)`` in order."""
    keys: list[Any] = []
    arrays: list[np.ndarray] = []

    def flush():
        batch = np.stack(arrays)
        n = len(batch)
        if n < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - n, axis=0)])
        out = fn(batch)
        out = tuple(np.asarray(o) for o in (out if isinstance(out, (tuple, list)) else (out,)))
        for k, key in enumerate(keys):
            yield key, tuple(o[k] for o in out)

    for key, arr in items:
        keys.append(key)
        arrays.append(arr)
        if len(keys) == batch_size:
            yield from flush()
            keys, arrays = [], []
    if keys:
        yield from flush()


class Blender:
    """Accumulates reconstructed tiles (row-major) and emits finished scene rows in order."""

    def __init__(self, grid: TileGrid, write_rows: Callable[[int, np.ndarray], None]) -> None:
        self.grid = grid
        self.write_rows = write_rows
        self.weights = grid.window()
        self.acc = np.zeros((grid.tile_h, grid.padded_w), np.float32)
        self.wsum = np.zeros((grid.tile_h, grid.padded_w), np.float32)
        self.row = 0  # tile row the buffer starts at
        self.done_in_row = 0

    def add(self, i: int, j: int, tile: np.ndarray) -> None:
        g = self.grid
        if i != self.row or self.done_in_row != j:
            raise RuntimeError(f"tile ({i}, {j}) out of row-major order")
        c0 = j * g.stride_w
        self.acc[:, c0:c0 + g.tile_w] += self.weights * tile.reshape(g.tile_h, g.tile_w)
        self.wsum[:, c0:c0 + g.tile_w] += self.weights
        self.done_in_row += 1
        if self.done_in_row == g.cols:
            self._finish_row()

    def _finish_row(self) -> None:
        g = self.grid
        last = self.row == g.rows - 1
        n_final = g.tile_h if last else g.stride_h
        p0 = self.row * g.stride_h  # padded row of buffer row 0
        s0, s1 = max(p0, g.margin), min(p0 + n_final, g.margin + g.height)
        if s1 > s0:
            block = (self.acc[s0 - p0:s1 - p0, g.margin:g.margin + g.width]
                     / self.wsum[s0 - p0:s1 - p0, g.margin:g.margin + g.width])
            self.write_rows(s0 - g.margin, block)
        if not last:
            keep = g.tile_h - g.stride_h
            self.acc[:keep] = self.acc[g.stride_h:]
            self.wsum[:keep] = self.wsum[g.stride_h:]
            self.acc[keep:] = 0
            self.wsum[keep:] = 0
        self.row += 1
        self.done_in_row = 0

    @property
    def finished(self) -> bool:
        return self.row == self.grid.rows
