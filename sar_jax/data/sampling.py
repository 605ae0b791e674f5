"""Which windows the pipeline reads: the patch index built from decimated validity masks (never a full read),
per-epoch random windows, the order they are read in, the fixed evaluation sets, and the bounded pixel sample
the preprocessing is fitted on.

A window is one row ``(scene, row, col)`` of an int64 array; every window is ``patch x patch``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sar_jax.core.errors import SarJaxError
from sar_jax.data.patches import Region
from sar_jax.data.sources import SceneSource

_FIT_WINDOW = 512  # side of the windows the preprocessing sample is read with (one 512 x 512 GeoTIFF tile or so)
_MAX_ROUNDS = 64  # rejection-sampling rounds before random sampling gives up on a mostly-invalid split


class ValidityIndex:
    """Each scene's validity at every ``step``-th pixel (``Raster.validity``) as a summed-area table, to
    estimate the valid fraction of any window without reading it.

    A window's fraction is taken over the mask samples from the one at or before its first row/column
    to the one at or after its last, so a window touching a no-data margin (a band of rows or columns,
    as in GRD products) always has a fraction below 1; invalid spots smaller than ``step`` are not seen
    here and are filled with 0 when read.
    """

    def __init__(self, scenes: Sequence[SceneSource], patch: int) -> None:
        self.patch = patch
        self.step = max(1, patch // 8)
        self.tables = []
        for scene in scenes:
            mask = np.asarray(scene.validity(self.step), bool)
            expected = (-(-scene.height // self.step), -(-scene.width // self.step))
            if mask.shape != expected:
                raise SarJaxError(f"{scene.path}: validity mask of shape {mask.shape}, expected {expected}")
            table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
            table[1:, 1:] = mask.cumsum(0).cumsum(1)
            self.tables.append(table)

    def fraction(self, scene: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Estimated valid fraction of the windows at top-left corners ``(rows, cols)`` of ``scene``."""
        table, s, p = self.tables[scene], self.step, self.patch
        i0, j0 = rows // s, cols // s
        i1 = np.minimum(-(-(rows + p - 1) // s), table.shape[0] - 2) + 1
        j1 = np.minimum(-(-(cols + p - 1) // s), table.shape[1] - 2) + 1
        inside = table[i1, j1] - table[i0, j1] - table[i1, j0] + table[i0, j0]
        return inside / ((i1 - i0) * (j1 - j0))


def grid_windows(regions: Sequence[Region], patch: int, stride: int, validity: ValidityIndex,
                 min_valid_fraction: float) -> np.ndarray:
    """Every ``patch x patch`` window inside ``regions`` at ``stride`` (row-major, region by region) whose
    valid fraction is at least ``min_valid_fraction`` -> (N, 3) int64 ``(scene, row, col)``."""
    parts = [np.zeros((0, 3), np.int64)]
    for reg in regions:
        rows = np.arange(reg.r0, reg.r1 - patch + 1, stride, dtype=np.int64)
        cols = np.arange(reg.c0, reg.c1 - patch + 1, stride, dtype=np.int64)
        rr, cc = (a.reshape(-1) for a in np.meshgrid(rows, cols, indexing="ij"))
        keep = validity.fraction(reg.scene, rr, cc) >= min_valid_fraction
        parts.append(np.stack([np.full(int(keep.sum()), reg.scene, np.int64), rr[keep], cc[keep]], 1))
    return np.concatenate(parts)


def random_windows(regions: Sequence[Region], patch: int, count: int, validity: ValidityIndex,
                   min_valid_fraction: float, rng: np.random.Generator, block: int | None = None) -> np.ndarray:
    """``count`` windows at uniformly random positions inside ``regions`` (any pixel offset), each with a
    valid fraction of at least ``min_valid_fraction`` (rejection sampling) -> (count, 3) int64.

    With ``block``, windows come in clusters: a random ``block x block`` square of the scene's grid of
    squares (weighted by its share of the regions), then ``(block // patch)**2`` windows with their
    top-left corner uniformly inside it, so :func:`block_shuffled` reads them together; each window is
    still uniform over the regions, but the windows of one epoch are not independent."""
    if block is None:
        ranges = [(r.scene, r.r0, r.r1 - patch + 1, r.c0, r.c1 - patch + 1) for r in regions]
        per_draw = 1
    else:
        ranges = [(r.scene, max(r.r0, i), min(r.r1 - patch + 1, i + block), max(r.c0, j),
                   min(r.c1 - patch + 1, j + block))
                  for r in regions
                  for i in range(r.r0 // block * block, r.r1 - patch + 1, block)
                  for j in range(r.c0 // block * block, r.c1 - patch + 1, block)]
        per_draw = max(1, (block // patch) ** 2)
    table = np.array(ranges, np.int64).reshape(-1, 5)
    spans = np.stack([table[:, 2] - table[:, 1], table[:, 4] - table[:, 3]], 1)
    usable = np.flatnonzero((spans > 0).all(1))
    weights = spans[usable].prod(1) / spans[usable].prod(1).sum()
    found, have = [], 0
    for _ in range(_MAX_ROUNDS):
        draws = usable[rng.choice(len(usable), -(-(2 * (count - have) + 16) // per_draw), p=weights)]
        pick = np.repeat(draws, per_draw)
        n = len(pick)
        rows = table[pick, 1] + (rng.random(n) * spans[pick, 0]).astype(np.int64)
        cols = table[pick, 3] + (rng.random(n) * spans[pick, 1]).astype(np.int64)
        scenes = table[pick, 0]
        keep = np.zeros(n, bool)
        for s in np.unique(scenes):
            sel = scenes == s
            keep[sel] = validity.fraction(int(s), rows[sel], cols[sel]) >= min_valid_fraction
        found.append(np.stack([scenes[keep], rows[keep], cols[keep]], 1))
        have += int(keep.sum())
        if have >= count:
            return np.concatenate(found)[:count]
    raise SarJaxError(f"random sampling found only {have} of {count} windows with a valid fraction >= "
                      f"{min_valid_fraction} (data.min_valid_fraction) in {_MAX_ROUNDS} rounds")


def block_shuffled(windows: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """``windows`` in random order block by block: the ``block x block`` px squares of every scene (by each
    window's top-left corner) in random order, the windows inside each square in random order.

    Consecutive windows then share the raster tiles of one square, so a process decodes each tile about
    once per square (GDAL's block cache) instead of once per window; the price is batches drawn from one
    square. Written here because Grain's shuffle is a global permutation."""
    _, square = np.unique(np.stack([windows[:, 0], windows[:, 1] // block, windows[:, 2] // block], 1), axis=0,
                          return_inverse=True)
    square_rank = rng.permutation(int(square.max()) + 1)[square.reshape(-1)]
    return windows[np.lexsort((rng.random(len(windows)), square_rank))]


def eval_windows(grid: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A fixed evaluation set: all of ``grid``, or a seeded choice of ``limit`` of its windows (in grid order)."""
    if limit is None or len(grid) <= limit:
        return grid
    return grid[np.sort(np.random.default_rng([seed, 13]).choice(len(grid), limit, replace=False))]


def fit_sample(scenes: Sequence[SceneSource], regions: Sequence[Region], max_pixels: int,
               seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(images, valid masks)`` of the training ``regions`` to fit the preprocessing on: the regions
    themselves when they hold at most ``max_pixels`` pixels (the fit then equals a fit on the whole split),
    else seeded random windows of at most 512 x 512 holding at most ``max_pixels`` pixels in all."""
    total = sum((r.r1 - r.r0) * (r.c1 - r.c0) for r in regions)
    if total <= max_pixels:
        parts = [scenes[r.scene].read((r.r0, r.c0, r.r1 - r.r0, r.c1 - r.c0)) for r in regions]
        return [v for v, _ in parts], [ok for _, ok in parts]
    rng = np.random.default_rng([seed, 17])
    areas = np.array([(r.r1 - r.r0) * (r.c1 - r.c0) for r in regions], np.float64)
    images, masks, left = [], [], max_pixels
    while left > 0:
        r = regions[rng.choice(len(regions), p=areas / areas.sum())]
        w = min(_FIT_WINDOW, r.c1 - r.c0)
        h = min(_FIT_WINDOW, r.r1 - r.r0, left // w)  # the last window only as tall as the pixels left
        if h < 16:  # the log-bias fit needs windows of at least 16 px
            break
        row = r.r0 + int(rng.integers(0, r.r1 - r.r0 - h + 1))
        col = r.c0 + int(rng.integers(0, r.c1 - r.c0 - w + 1))
        values, valid = scenes[r.scene].read((row, col, h, w))
        images.append(values)
        masks.append(valid)
        left -= h * w
    return images, masks
