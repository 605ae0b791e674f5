"""Atomic file writes: write a temporary sibling, then rename it onto the target, so a reader
(or a crash) never sees half a file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_path(path: str | Path) -> Path:
    """A hidden sibling of ``path`` with the same extension (``.<stem>.partial-<pid><suffix>``): never
    mistaken for a finished file, and unique per process."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield :func:`temp_path` of ``path`` to write to; renamed onto ``path`` when the block ends,
    removed if it raises."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (with a final newline) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
