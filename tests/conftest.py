"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def shared_sar_dir() -> Path:
    """``../shared/data/sar`` beside the checkout (two real 8-bit SAR PNGs); skipped when absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sar"
    if not path.is_dir():
        pytest.skip(f"real SAR samples not found at {path}")
    return path
