"""The ``.sarc`` bitstream file: a JSON header and named byte streams, checksummed.

Layout (integers little-endian)::

    b"SARC" | version (1 byte) | header length n (uint32) | n bytes of UTF-8 JSON
    | the streams, concatenated | CRC-32 of every preceding byte (uint32)

The JSON is ``{"header": <the caller's dict>, "streams": [[name, length], ...]}`` (the streams in
the order they follow).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import atomic_path

MAGIC = b"SARC"
VERSION = 1
_PREFIX = struct.Struct("<4sBI")  # magic, version, header length
_CRC = struct.Struct("<I")


def _pack(header: dict[str, Any], streams: dict[str, bytes]) -> bytes:
    if not isinstance(header, dict):
        raise SarJaxError(f"sarc header must be a dict, got {type(header).__name__}")
    for name, data in streams.items():
        if not isinstance(name, str) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise SarJaxError(f"sarc stream {name!r} must be bytes under a str name, got {type(data).__name__}")
    meta = {"header": header, "streams": [[name, len(data)] for name, data in streams.items()]}
    try:
        text = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise SarJaxError(f"sarc header is not JSON-serialisable: {e}") from None
    body = b"".join([_PREFIX.pack(MAGIC, VERSION, len(text)), text, *map(bytes, streams.values())])
    return body + _CRC.pack(zlib.crc32(body))


def write_sarc(path: str | Path, header: dict[str, Any], streams: dict[str, bytes]) -> int:
    """Write a ``.sarc`` file atomically (nothing is left at ``path`` or beside it if this fails);
    returns the bytes written."""
    data = _pack(header, streams)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise SarJaxError(f"{path}: cannot write the bitstream ({e.strerror or e})") from None
    return len(data)


def _layout(data: bytes, length: int) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """The JSON of a file whose prefix is sound: the caller's header and the (name, length) streams."""
    meta = json.loads(data[_PREFIX.size:_PREFIX.size + length].decode("utf-8"))
    streams = [(str(name), int(size)) for name, size in meta["streams"]]
    if not isinstance(meta["header"], dict) or any(size < 0 for _, size in streams):
        raise ValueError("bad layout")
    return meta["header"], streams


def read_sarc(path: str | Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The header and streams of a ``.sarc`` file; a missing, foreign, truncated or corrupt file is
    one :class:`SarJaxError` line naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SarJaxError(f"{path}: no such file") from None
    except OSError as e:
        raise SarJaxError(f"{path}: cannot read ({e.strerror or e})") from None
    minimum = _PREFIX.size + _CRC.size
    if data[:len(MAGIC)] != MAGIC[:len(data)]:
        raise SarJaxError(f"{path}: not a sar_jax bitstream (bad magic)")
    if len(data) > len(MAGIC) and data[len(MAGIC)] != VERSION:
        raise SarJaxError(f"{path}: unsupported version {data[len(MAGIC)]} (this sar_jax reads version {VERSION})")
    if len(data) < minimum:
        raise SarJaxError(f"{path}: truncated (expected at least {minimum} bytes, found {len(data)})")
    length = _PREFIX.unpack_from(data)[2]
    if len(data) < _PREFIX.size + length + _CRC.size:
        raise SarJaxError(f"{path}: truncated (expected at least {_PREFIX.size + length + _CRC.size} bytes, "
                          f"found {len(data)})")
    crc_ok = zlib.crc32(data[:-_CRC.size]) == _CRC.unpack_from(data, len(data) - _CRC.size)[0]
    try:
        header, layout = _layout(data, length)
    except (ValueError, KeyError, TypeError):
        raise SarJaxError(f"{path}: corrupt ({'unreadable header' if crc_ok else 'CRC mismatch'})") from None
    expected = _PREFIX.size + length + sum(size for _, size in layout) + _CRC.size
    if len(data) < expected:
        raise SarJaxError(f"{path}: truncated (expected {expected} bytes, found {len(data)})")
    if len(data) > expected:
        raise SarJaxError(f"{path}: corrupt (expected {expected} bytes, found {len(data)})")
    if not crc_ok:
        raise SarJaxError(f"{path}: corrupt (CRC mismatch)")
    streams, start = {}, _PREFIX.size + length
    for name, size in layout:
        streams[name] = data[start:start + size]
        start += size
    return header, streams
