"""Shared helpers for the parity suite."""

from __future__ import annotations

import pytest


def assert_rows(rows):
    """Every row of a parity check passes; the message lists the failing ones."""
    assert rows, "the check produced no rows"
    failed = [f"{r['check']}: {r['quantity']}: observed {r['observed']:.3g}, tolerance {r['tolerance']}"
              for r in rows if not r["pass"]]
    assert not failed, "\n".join(failed)


@pytest.fixture
def check_rows():
    return assert_rows
