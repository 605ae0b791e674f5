"""Exact tiling: a scene of any size through a fully convolutional model, tile by tile, with the
result of one whole-scene pass.

The reference is the scene padded once (reflection at the bottom and right) to a multiple of 16
and run through the model in one call. Per axis (:class:`AxisTiles`), output tiles of ``tile`` px
start on the 16-px latent grid; each is computed from a window reaching ``halo`` px beyond it on
both sides, shifted inward (by multiples of 16) where it would leave the padded scene, so a window
edge is either the padded scene's own edge (the convolutions then see exactly the zero padding of
the whole-scene pass) or at least ``halo`` px from every output pixel kept. With ``halo`` at
least the model's dependency radius (:func:`dependency_radius`) the kept pixels equal the
whole-scene pass up to float32 rounding; nothing is blended. All windows of a scene have one
shape (one compiled model call); an axis that fits ``tile + 2 * halo`` or two tiles is one window
(at most ``max(tile + 2 * halo, 2 * tile)`` px), and the
first and last tiles of an axis are ``tile + halo`` long (their outer side needs no halo), so the
default 512 px tiles with a 64 px halo compute 1.56x the pixels of a 20000 x 20000 scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError

GRID = 16  # the encoder's total stride: tiles and windows start on multiples of it


def dependency_radius(kernel_size: int, depth: int) -> int:
    """Largest distance (px) between an output pixel of the autoencoder and an input pixel it
    depends on: ``depth`` stride-2 convolutions (padding ``kernel_size // 2``) followed by
    ``depth`` stride-2 transposed convolutions, traced back from every output phase."""
    p = kernel_size // 2
    radius = 0
    stride = 2**depth
    for o in range(stride):  # the receptive field depends on the output's phase on the latent grid
        lo = hi = o
        for _ in range(depth):  # transposed conv: o = 2 i - p + t, t in [0, k)
            lo, hi = math.ceil((lo + p - (kernel_size - 1)) / 2), (hi + p) // 2
        for _ in range(depth):  # conv: y[i] reads x[2 i - p + t]
            lo, hi = 2 * lo - p, 2 * hi - p + kernel_size - 1
        radius = max(radius, o - lo, hi - o)
    return radius


def default_halo(model_cfg: dict[str, Any], downsampling: int = GRID) -> int:
    """The halo that makes tiles exact for ``model.kind``, rounded up to the 16-px grid: the dependency
    radius of the four stride-2 5x5 layers each way (baseline, and the codecs' g_a / g_s: 64), or the
    U-Net's grid-aligned reach (:func:`sar_jax.nn.unet.unet_tile_halo`: 64 at depth 4)."""
    if model_cfg.get("kind") == "unet":
        from sar_jax.nn.unet import unet_tile_halo

        radius = unet_tile_halo(int(model_cfg["unet_depth"]))
    else:
        radius = dependency_radius(int(model_cfg.get("kernel_size", 5)), int(math.log2(downsampling)))
    return -(-radius // GRID) * GRID


def check_tiling(tile: int, halo: int) -> None:
    """Tile a positive multiple of 16, halo a non-negative multiple of 16."""
    if not isinstance(tile, int) or tile < GRID or tile % GRID:
        raise SarJaxError(f"tile {tile}: expected a positive multiple of 16 (the encoder halves the size 4 times)")
    if not isinstance(halo, int) or halo < 0 or halo % GRID:
        raise SarJaxError(f"halo {halo}: expected a non-negative multiple of 16 (tiles stay on the latent grid)")


@dataclass(frozen=True)
class AxisTiles:
    """Output tiles and their input windows along one axis (padded coordinates = scene coordinates)."""

    length: int  # scene pixels
    tile: int
    halo: int

    @property
    def padded(self) -> int:
        """The scene's length padded to a multiple of 16."""
        return -(-self.length // GRID) * GRID

    @property
    def single(self) -> bool:
        """The axis is one window: it fits ``tile + 2 * halo``, or two tiles (then one window of the
        whole axis computes less than two windows with halos)."""
        return self.padded <= max(self.tile + 2 * self.halo, 2 * self.tile)

    @property
    def window(self) -> int:
        """Window length (the same for every tile)."""
        return self.padded if self.single else self.tile + 2 * self.halo

    @property
    def max_tile(self) -> int:
        """The longest output tile (the first and last may be ``tile + halo``: one side is the scene's edge)."""
        return max(n for _, n, _ in self.tiles())

    def tiles(self) -> list[tuple[int, int, int]]:
        """``(out_start, out_len, win_start)`` per tile; all multiples of 16. The first and last tiles
        reach ``tile + halo`` px (their windows need a halo on the inner side only), the rest ``tile``."""
        if self.single:
            return [(0, self.padded, 0)]
        spans = [(0, self.tile + self.halo)]
        a = self.tile + self.halo
        while self.padded - a > self.tile + self.halo:
            spans.append((a, self.tile))
            a += self.tile
        spans.append((a, self.padded - a))
        return [(a, n, min(max(a - self.halo, 0), self.padded - self.window)) for a, n in spans]


@dataclass(frozen=True)
class TileGrid:
    """The 2-D tiling of a ``height x width`` scene."""

    rows: AxisTiles
    cols: AxisTiles

    @classmethod
    def create(cls, height: int, width: int, tile: int, halo: int) -> TileGrid:
        check_tiling(tile, halo)
        if height < 1 or width < 1:
            raise SarJaxError(f"empty scene ({height} x {width})")
        return cls(AxisTiles(height, tile, halo), AxisTiles(width, tile, halo))

    @property
    def window_shape(self) -> tuple[int, int]:
        return self.rows.window, self.cols.window

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.rows.padded, self.cols.padded

    @property
    def num_tiles(self) -> int:
        return len(self.rows.tiles()) * len(self.cols.tiles())

    def computed_pixels(self) -> int:
        """Pixels the model computes (windows, halos included)."""
        return self.num_tiles * self.rows.window * self.cols.window


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices into ``[0, n)`` of numpy's ``pad(mode="reflect")`` (edge not repeated), any distance."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


def read_padded(read: Callable[[tuple[int, int, int, int]], np.ndarray], shape: tuple[int, int],
                rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Rows ``[r0, r1)`` x cols ``[c0, c1)`` of the scene reflection-padded beyond ``shape``, from
    ``read((r0, c0, h, w))`` of the bounding window of the scene pixels they need (one read; the
    last two axes of what it returns are rows and columns)."""
    ri = reflect_index(np.arange(*rows), shape[0])
    ci = reflect_index(np.arange(*cols), shape[1])
    r0, c0 = int(ri.min()), int(ci.min())
    block = read((r0, c0, int(ri.max()) - r0 + 1, int(ci.max()) - c0 + 1))
    if ri[-1] - ri[0] == len(ri) - 1 and ci[-1] - ci[0] == len(ci) - 1:  # inside the scene: no copy
        return block
    return block[..., (ri - r0)[:, None], (ci - c0)[None, :]]


def window_tiles(grid: TileGrid, read_band: Callable[[int, int], np.ndarray], scale: int = 1
                 ) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """``((i, j), window)`` in row-major order; ``read_band(s, n)`` returns padded rows ``[s, s + n)``
    over the whole padded width, read once per tile row. ``scale``: the bands' resolution relative
    to the scene (16 for latents; ``s`` and ``n`` stay in scene pixels)."""
    for i, (_, _, s) in enumerate(grid.rows.tiles()):
        band = read_band(s, grid.rows.window)
        for j, (_, _, sc) in enumerate(grid.cols.tiles()):
            yield (i, j), band[:, sc // scale:(sc + grid.cols.window) // scale]


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


class TileRows:
    """Crops computed windows to their output tiles and hands each finished band of scene rows
    (tile rows in order, the padding cropped off) to ``write_rows(r0, block)``.

    ``scale`` is the resolution of what is assembled relative to the scene (1: images, 16:
    latents); blocks are ``(rows, cols, ...)``."""

    def __init__(self, grid: TileGrid, write_rows: Callable[[int, np.ndarray], None], scale: int = 1,
                 height: int | None = None, width: int | None = None) -> None:
        self.grid = grid
        self.write_rows = write_rows
        self.scale = scale
        self.height = height if height is not None else grid.rows.length
        self.width = width if width is not None else grid.cols.length
        self.row_tiles, self.col_tiles = grid.rows.tiles(), grid.cols.tiles()
        self.buffer: np.ndarray | None = None
        self.row = 0
        self.done = 0

    def add(self, i: int, j: int, window: np.ndarray) -> None:
        if i != self.row or j != self.done:
            raise RuntimeError(f"tile ({i}, {j}) out of row-major order")
        k = self.scale
        a, n, s = self.row_tiles[i]
        ac, nc, sc = self.col_tiles[j]
        if self.buffer is None:
            self.buffer = np.empty((self.grid.rows.max_tile // k, self.grid.cols.padded // k) + window.shape[2:],
                                   window.dtype)
        self.buffer[:n // k, ac // k:(ac + nc) // k] = window[(a - s) // k:(a - s + n) // k,
                                                              (ac - sc) // k:(ac - sc + nc) // k]
        self.done += 1
        if self.done == len(self.col_tiles):
            r0 = a // k
            rows = min(n // k, self.height - r0)
            if rows > 0:
                self.write_rows(r0, self.buffer[:rows, :self.width])
            self.row += 1
            self.done = 0

    @property
    def finished(self) -> bool:
        return self.row == len(self.row_tiles)
