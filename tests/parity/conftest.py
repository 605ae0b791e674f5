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


@pytest.fixture
def convert_error(capsys):
    """``f(argv)``: run ``python -m sar_jax.convert`` in-process, assert exit 2 and exactly one ``error:`` line,
    return that line."""
    from sar_jax.core.cli import run_main
    from sar_jax.parity.checkpoints import main

    def error(argv):
        code = run_main(main, argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1, err
        return lines[0]

    return error
