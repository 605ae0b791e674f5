"""Deterministic integer coding tables: each row holds the quantised frequencies of one discrete
distribution plus an escape symbol, summing to exactly ``2**precision``, so the encoder and the
decoder (or two machines) read the same numbers from the stored arrays, never re-derive them in
floating point."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from sar_jax.core.errors import SarJaxError

#: The bits of a frequency total; 16 as CompressAI's coders (constriction codes with 24).
DEFAULT_PRECISION = 16
_MAX_PRECISION = 24


@dataclass(frozen=True)
class CodingTables:
    """``freqs[k, :lengths[k] + 1]``: the frequencies of symbols ``0 .. lengths[k] - 1`` (the integer
    values ``offsets[k] .. offsets[k] + lengths[k] - 1``) and, last, of the escape symbol for values
    outside that range; the rest of the row is 0. Each used entry is >= 1, each row sums to
    ``2**precision``."""

    freqs: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    precision: int = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        _validate(self.freqs, self.lengths, self.offsets, self.precision)

    @property
    def num_tables(self) -> int:
        return int(self.lengths.shape[0])

    def probabilities(self, k: int) -> np.ndarray:
        """Row ``k`` (symbols then escape) as float64 probabilities ``freqs / 2**precision``: exact."""
        return self.freqs[k, :self.lengths[k] + 1].astype(np.float64) / float(1 << self.precision)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The tables as plain arrays (for ``np.savez`` or a checkpoint side file)."""
        return {"freqs": self.freqs.copy(), "lengths": self.lengths.copy(), "offsets": self.offsets.copy(),
                "precision": np.asarray(self.precision, dtype=np.int32)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> CodingTables:
        """Inverse of :meth:`to_arrays`; refuses arrays that break the invariants."""
        missing = sorted({"freqs", "lengths", "offsets", "precision"} - set(arrays))
        if missing:
            raise SarJaxError(f"coding tables: missing arrays {missing}")
        return cls(freqs=np.asarray(arrays["freqs"]), lengths=np.asarray(arrays["lengths"]),
                   offsets=np.asarray(arrays["offsets"]), precision=int(np.asarray(arrays["precision"])))

    def content_hash(self) -> str:
        """SHA-256 (hex) of the precision, shapes and little-endian int32 contents."""
        h = hashlib.sha256(f"sar_jax.codec.tables/1 precision={self.precision} "
                           f"shape={self.freqs.shape}".encode())
        for a in (self.lengths, self.offsets, self.freqs):
            h.update(np.ascontiguousarray(a, dtype="<i4").tobytes())
        return h.hexdigest()


def _validate(freqs: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, precision: int) -> None:
    for name, a, ndim in (("freqs", freqs, 2), ("lengths", lengths, 1), ("offsets", offsets, 1)):
        if a.dtype != np.int32 or a.ndim != ndim:
            raise SarJaxError(f"coding tables: {name} must be a {ndim}-D int32 array, got {a.dtype} {a.shape}")
    if not 1 <= precision <= _MAX_PRECISION:
        raise SarJaxError(f"coding tables: precision must be in 1..{_MAX_PRECISION}, got {precision}")
    k = lengths.shape[0]
    if k == 0 or offsets.shape != (k,) or freqs.shape[0] != k:
        raise SarJaxError(f"coding tables: need K >= 1 rows with freqs (K, Lmax+1), lengths (K,), offsets (K,); "
                          f"got {freqs.shape}, {lengths.shape}, {offsets.shape}")
    if lengths.min() < 1 or freqs.shape[1] != lengths.max() + 1:
        raise SarJaxError(f"coding tables: lengths must be >= 1 and freqs {lengths.max() + 1} wide, "
                          f"got lengths in {lengths.min()}..{lengths.max()} and width {freqs.shape[1]}")
    used = np.arange(freqs.shape[1])[None, :] <= lengths[:, None]
    if (freqs[used] < 1).any() or (freqs[~used] != 0).any():
        raise SarJaxError("coding tables: every used frequency must be >= 1 and the padding 0")
    sums = freqs.sum(axis=1, dtype=np.int64)
    if (sums != 1 << precision).any():
        bad = int(np.flatnonzero(sums != 1 << precision)[0])
        raise SarJaxError(f"coding tables: row {bad} sums to {sums[bad]}, expected 2**{precision}")


def _quantize_row(p: np.ndarray, precision: int) -> np.ndarray:
    """Frequencies >= 1 summing to ``2**precision``: round ``p * 2**precision`` (half to even), raise
    zeros to 1, then move the difference to or from the entries in proportion to their size (the
    remainder one unit each to the largest, ties by index)."""
    total = 1 << precision
    f = np.maximum(np.rint(p * total), 1).astype(np.int64)
    while (diff := total - int(f.sum())) != 0:
        room = f - 1 if diff < 0 else f  # how far each entry may move (it must stay >= 1)
        step = np.minimum(room, abs(diff) * f // int(f.sum()))
        if not step.any():
            order = np.argsort(-f, kind="stable")
            order = order[room[order] > 0][:abs(diff)]
            step = np.zeros_like(f)
            step[order] = 1
        f += np.sign(diff) * step
    return f


def quantize_pmfs(pmf: Sequence[np.ndarray] | np.ndarray, tail_mass: float | Sequence[float] | np.ndarray,
                  offsets: Sequence[int] | np.ndarray, precision: int = DEFAULT_PRECISION) -> CodingTables:
    """Coding tables from float64 pmf rows (one per table, any lengths) and the mass outside each row
    (``tail_mass``, scalar or per row; it becomes the escape symbol's probability). Each row with its
    tail mass is normalised to 1 before it is quantised (:func:`_quantize_row`), so a row need not
    sum to exactly ``1 - tail_mass``."""
    rows = [np.asarray(r, dtype=np.float64) for r in pmf]
    offsets = np.asarray(offsets)
    tails = np.broadcast_to(np.asarray(tail_mass, dtype=np.float64), (len(rows),))
    if not rows or offsets.shape != (len(rows),) or not np.issubdtype(offsets.dtype, np.integer):
        raise SarJaxError(f"quantize_pmfs: need >= 1 pmf rows and one integer offset per row, "
                          f"got {len(rows)} rows and offsets {offsets.dtype} {offsets.shape}")
    if not 1 <= precision <= _MAX_PRECISION:
        raise SarJaxError(f"quantize_pmfs: precision must be in 1..{_MAX_PRECISION}, got {precision}")
    lengths = np.array([r.size for r in rows], dtype=np.int32)
    freqs = np.zeros((len(rows), int(lengths.max()) + 1), dtype=np.int32)
    for k, (row, tail) in enumerate(zip(rows, tails)):
        p = np.append(row, tail)
        if row.ndim != 1 or row.size == 0 or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
            raise SarJaxError(f"quantize_pmfs: row {k} must be a non-empty 1-D array of finite probabilities "
                              f">= 0 with a positive sum (tail mass included)")
        if p.size > 1 << precision:
            raise SarJaxError(f"quantize_pmfs: row {k} has {p.size} symbols, more than 2**{precision}")
        freqs[k, :p.size] = _quantize_row(p / p.sum(), precision)
    return CodingTables(freqs=freqs, lengths=lengths, offsets=offsets.astype(np.int32), precision=precision)


def gaussian_pmfs(scale_table: Sequence[float] | np.ndarray,
                  tail_mass: float = 1e-9) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per scale ``s``: the pmf of a zero-mean Gaussian discretised to the integers ``-c .. c``,
    ``P(v) = Phi((0.5 - |v|) / s) - Phi((-0.5 - |v|) / s)`` with ``c = ceil(s * -ndtri(tail_mass / 2))``,
    the mass outside (``2 * Phi((-0.5 - c) / s)``) and the offsets ``-c`` (CompressAI's
    ``GaussianConditional.update`` formulas, in float64)."""
    scales = np.asarray(scale_table, dtype=np.float64)
    if scales.ndim != 1 or scales.size == 0 or not (scales > 0).all() or not np.isfinite(scales).all():
        raise SarJaxError(f"gaussian_tables: scale_table must be a non-empty 1-D array of finite scales > 0, "
                          f"got {scales.shape}")
    if not 0 < tail_mass < 1:
        raise SarJaxError(f"gaussian_tables: tail_mass must be in (0, 1), got {tail_mass}")
    centers = np.ceil(scales * -ndtri(tail_mass / 2)).astype(np.int64)
    pmfs = []
    for s, c in zip(scales, centers):
        v = np.abs(np.arange(-c, c + 1, dtype=np.float64))
        pmfs.append(ndtr((0.5 - v) / s) - ndtr((-0.5 - v) / s))
    tails = 2 * ndtr((-0.5 - centers) / scales)
    return pmfs, tails, -centers


def gaussian_tables(scale_table: Sequence[float] | np.ndarray, tail_mass: float = 1e-9,
                    precision: int = DEFAULT_PRECISION) -> CodingTables:
    """Coding tables of :func:`gaussian_pmfs`, one row per scale of ``scale_table``."""
    pmfs, tails, offsets = gaussian_pmfs(scale_table, tail_mass)
    return quantize_pmfs(pmfs, tails, offsets, precision)


def scale_indexes(scales: np.ndarray, scale_table: Sequence[float] | np.ndarray) -> np.ndarray:
    """The table row for each predicted scale: the smallest ``i`` with ``scale_table[i] >= scale``
    (the last row for larger scales), as CompressAI's ``build_indexes``; int32, the shape of ``scales``."""
    table = np.asarray(scale_table, dtype=np.float64)
    return np.minimum(np.searchsorted(table, np.asarray(scales, dtype=np.float64), side="left"),
                      table.size - 1).astype(np.int32)
