"""Lossless coding of integer arrays with :class:`~sar_jax.codec.tables.CodingTables` through
constriction's range coder.

Each position ``i`` is coded with table ``table_index[i]``, which the decoder must know beforehand.
The positions are grouped by table (in flattened order within a group) and each group is one
vectorised constriction call with one categorical model, built from ``freqs / 2**precision`` (exact
in float64, so both sides build the same model). A value outside its table's range is coded as the
escape symbol and, after all groups, losslessly: its overflow ``o`` (``value - offset`` if below the
range, ``value - offset - length`` if above), zigzag-mapped to ``z >= 0``, as an Elias-gamma code of
``z + 1`` (the bit count less one through a uniform model over 64, then the bits below the leading
one in uniform chunks of at most 16 bits). Values must fit in int32.
"""

from __future__ import annotations

import constriction
import numpy as np

from sar_jax.codec.tables import CodingTables
from sar_jax.core.errors import SarJaxError

_CHUNK_BITS = 16
_MAX_CHUNKS = 3  # int32 values and offsets: |overflow| < 2**32, z + 1 <= 2**33, <= 33 bits below the leading one
_INT32 = np.iinfo(np.int32)
# constriction's submodules are attributes of its extension module, not importable by name
Categorical, Uniform = constriction.stream.model.Categorical, constriction.stream.model.Uniform
RangeEncoder, RangeDecoder = constriction.stream.queue.RangeEncoder, constriction.stream.queue.RangeDecoder


def _groups(table_index: np.ndarray, tables: CodingTables) -> tuple[np.ndarray, np.ndarray]:
    """Flattened positions sorted by table (stable) and the start of each table's run (K + 1)."""
    flat = table_index.reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= tables.num_tables):
        raise SarJaxError(f"entropy coder: table_index must be in 0..{tables.num_tables - 1}, "
                          f"got {flat.min()}..{flat.max()}")
    order = np.argsort(flat, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=tables.num_tables))])
    return order, starts


def _model(tables: CodingTables, k: int) -> Categorical:
    return Categorical(tables.probabilities(k), perfect=False)


def _check_index(table_index: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    table_index = np.asarray(table_index)
    if not np.issubdtype(table_index.dtype, np.integer) or (shape is not None and table_index.shape != shape):
        raise SarJaxError(f"entropy coder: table_index must be an integer array of shape {shape}, "
                          f"got {table_index.dtype} {table_index.shape}")
    return table_index


def _chunk_widths(nbits: np.ndarray) -> np.ndarray:
    """(E, _MAX_CHUNKS): the bits in each 16-bit chunk (low chunk first) of ``nbits`` bits; 0 = unused."""
    return np.clip(nbits[:, None] - _CHUNK_BITS * np.arange(_MAX_CHUNKS, dtype=np.int64), 0, _CHUNK_BITS)


def _gamma_parts(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elias-gamma parts of ``z + 1`` (int64 >= 1): the bit counts less one, and the values and
    uniform sizes of the chunks of the bits below the leading one (value-major, low chunk first)."""
    n = z + 1
    nbits = np.frexp(n.astype(np.float64))[1].astype(np.int64) - 1  # exact: n < 2**53
    width = _chunk_widths(nbits)
    shift = _CHUNK_BITS * np.arange(_MAX_CHUNKS, dtype=np.int64)
    chunks = ((n - (np.int64(1) << nbits))[:, None] >> shift) & ((np.int64(1) << width) - 1)
    return nbits, chunks[width > 0], np.int64(1) << width[width > 0]


def encode(values: np.ndarray, table_index: np.ndarray, tables: CodingTables) -> bytes:
    """The range-coded bytes of integer ``values``, position ``i`` with table ``table_index[i]``."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        raise SarJaxError(f"entropy coder: values must be integers, got {values.dtype}")
    table_index = _check_index(table_index, values.shape)
    if values.size and (values.min() < _INT32.min or values.max() > _INT32.max):
        raise SarJaxError(f"entropy coder: values must fit in int32, got {values.min()}..{values.max()}")
    order, starts = _groups(table_index, tables)
    flat = values.reshape(-1).astype(np.int64)
    lengths, offsets = tables.lengths.astype(np.int64), tables.offsets.astype(np.int64)
    rel = flat - offsets[table_index.reshape(-1)]
    length = lengths[table_index.reshape(-1)]
    escaped = (rel < 0) | (rel >= length)
    symbols = np.where(escaped, length, rel).astype(np.int32)
    encoder = RangeEncoder()
    for k in np.flatnonzero(np.diff(starts)):
        encoder.encode(symbols[order[starts[k]:starts[k + 1]]], _model(tables, k))
    if escaped.any():
        over = np.where(rel[escaped] < 0, rel[escaped], rel[escaped] - length[escaped])
        nbits, chunks, sizes = _gamma_parts(np.where(over >= 0, 2 * over, -2 * over - 1))
        encoder.encode(nbits.astype(np.int32), Uniform(64))
        if chunks.size:
            encoder.encode(chunks.astype(np.int32), Uniform(), sizes.astype(np.int32))
    return encoder.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, table_index: np.ndarray, tables: CodingTables) -> np.ndarray:
    """The int32 values :func:`encode` coded into ``data``, in the shape of ``table_index``."""
    table_index = _check_index(table_index)
    if len(data) % 4:
        raise SarJaxError(f"entropy coder: the coded data must be whole 32-bit words, got {len(data)} bytes")
    order, starts = _groups(table_index, tables)
    decoder = RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    symbols = np.empty(table_index.size, dtype=np.int64)
    for k in np.flatnonzero(np.diff(starts)):
        symbols[order[starts[k]:starts[k + 1]]] = decoder.decode(_model(tables, k), int(starts[k + 1] - starts[k]))
    index = table_index.reshape(-1)
    length = tables.lengths.astype(np.int64)[index]
    values = symbols + tables.offsets.astype(np.int64)[index]
    escaped = np.flatnonzero(symbols == length)
    if escaped.size:
        nbits = decoder.decode(Uniform(64), escaped.size).astype(np.int64)
        if nbits.max() > _CHUNK_BITS * _MAX_CHUNKS:
            raise SarJaxError("entropy coder: corrupt escape code (overflow too long)")
        width = _chunk_widths(nbits)
        chunks = np.zeros(width.shape, dtype=np.int64)
        if (width > 0).any():
            chunks[width > 0] = decoder.decode(Uniform(), (np.int64(1) << width[width > 0]).astype(np.int32))
        z = (np.int64(1) << nbits) + (chunks << (_CHUNK_BITS * np.arange(_MAX_CHUNKS))).sum(axis=1) - 1
        over = np.where(z % 2 == 0, z // 2, -(z + 1) // 2)
        offset = tables.offsets.astype(np.int64)[index[escaped]]
        values[escaped] = offset + np.where(over < 0, over, length[escaped] + over)
    if values.size and (values.min() < _INT32.min or values.max() > _INT32.max):
        raise SarJaxError("entropy coder: corrupt data (a decoded value does not fit in int32)")
    return values.astype(np.int32).reshape(table_index.shape)


def ideal_bits(values: np.ndarray, table_index: np.ndarray, tables: CodingTables) -> float:
    """The information content ``sum(-log2(freq / 2**precision))`` of the symbols :func:`encode`
    codes (an escape counts its escape symbol only, not the overflow bits after it)."""
    index = _check_index(table_index, np.shape(values)).reshape(-1)
    rel = np.asarray(values, dtype=np.int64).reshape(-1) - tables.offsets.astype(np.int64)[index]
    length = tables.lengths.astype(np.int64)[index]
    symbols = np.where((rel < 0) | (rel >= length), length, rel)
    return float(np.sum(tables.precision - np.log2(tables.freqs[index, symbols].astype(np.float64))))
