"""The .sarc bitstream file (sar_jax.codec.container): round trip, atomic writes, and every damaged
file refused in one line that names it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from sar_jax.codec.container import MAGIC, VERSION, read_sarc, write_sarc
from sar_jax.core.errors import SarJaxError

HEADER = {"model": {"kind": "hyperprior", "N": 8, "M": 12}, "fingerprint": "ab" * 32, "scene": [1, 300, 257],
          "crs_wkt": 'PROJCS["WGS 84 / UTM zone 33N"]', "transform": [10.0, 0.0, 5e5, 0.0, -10.0, 4e6],
          "nodata": None, "note": "élan – ünïcode", "tiles": [[0, 0, 64, 64], [0, 64, 64, 64]]}
STREAMS = {"z": bytes(range(256)) * 3, "y": b"\x00\xff" * 1001, "empty": b""}


@pytest.fixture
def sarc(tmp_path) -> Path:
    path = tmp_path / "scene.sarc"
    write_sarc(path, HEADER, STREAMS)
    return path


def test_round_trip(sarc):
    header, streams = read_sarc(sarc)
    assert header == HEADER and streams == STREAMS and list(streams) == ["z", "y", "empty"]
    data = sarc.read_bytes()
    assert data[:5] == MAGIC + bytes([VERSION])
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert write_sarc(sarc, {}, {}) == sarc.stat().st_size
    assert read_sarc(sarc) == ({}, {})
    assert sorted(p.name for p in sarc.parent.iterdir()) == ["scene.sarc"]


def _refused(path: Path, match: str) -> str:
    with pytest.raises(SarJaxError, match=match) as info:
        read_sarc(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def _damage(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_corrupt_files_are_refused_in_one_line(sarc):
    data = sarc.read_bytes()
    size = len(data)
    flipped = bytearray(data)
    flipped[size - 100] ^= 0x10  # a payload byte
    _refused(_damage(sarc, bytes(flipped)), r"corrupt \(CRC mismatch\)$")
    flipped = bytearray(data)
    flipped[-1] ^= 0x01  # the checksum itself
    _refused(_damage(sarc, bytes(flipped)), r"corrupt \(CRC mismatch\)$")
    flipped = bytearray(data)
    flipped[12] ^= 0x7F  # the JSON header
    _refused(_damage(sarc, bytes(flipped)), r"corrupt \(")
    _refused(_damage(sarc, data[:-1]), rf"truncated \(expected {size} bytes, found {size - 1}\)$")
    _refused(_damage(sarc, data[:size // 2]), rf"truncated \(expected {size} bytes, found {size // 2}\)$")
    _refused(_damage(sarc, data[:20]), r"truncated \(expected at least \d+ bytes, found 20\)$")
    _refused(_damage(sarc, data[:3]), r"truncated \(expected at least 13 bytes, found 3\)$")
    _refused(_damage(sarc, b""), r"truncated \(expected at least 13 bytes, found 0\)$")
    _refused(_damage(sarc, data + b"\x00"), rf"corrupt \(expected {size} bytes, found {size + 1}\)$")
    _refused(_damage(sarc, b"GIF8" + data[4:]), r"not a sar_jax bitstream \(bad magic\)$")
    _refused(_damage(sarc, b"PK\x03\x04"), r"bad magic")
    _refused(_damage(sarc, data[:4] + bytes([VERSION + 1]) + data[5:]), rf"unsupported version {VERSION + 1} ")
    _refused(sarc.with_name("missing.sarc"), r"no such file$")


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "scene.sarc"
    with pytest.raises(SarJaxError, match="not JSON-serialisable"):
        write_sarc(path, {"bad": object()}, STREAMS)
    with pytest.raises(SarJaxError, match="stream 'y' must be bytes"):
        write_sarc(path, HEADER, {"y": "text"})
    assert list(tmp_path.iterdir()) == []

    def fail(self, data):
        Path.open(self, "wb").write(data[:10])  # half a file, then the failure
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Path, "write_bytes", fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_sarc(path, HEADER, STREAMS)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    write_sarc(path, HEADER, STREAMS)
    before = path.read_bytes()
    def no_space(*args):
        raise OSError(28, "No space")

    monkeypatch.setattr("sar_jax.core.files.os.replace", no_space)
    with pytest.raises(SarJaxError, match=r"cannot write the bitstream \(No space\)$"):
        write_sarc(path, {}, {"other": b"x"})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["scene.sarc"]
    monkeypatch.undo()
    with pytest.raises(SarJaxError, match="cannot write"):
        write_sarc(tmp_path / "no" / "dir.sarc", HEADER, STREAMS)
