"""sar_jax.parity.gradients: per-parameter gradients of the combined loss vs the reference."""

from __future__ import annotations

from sar_jax.parity.gradients import check_gradients


def test_gradients_per_parameter(check_rows):
    rows = check_gradients()
    check_rows(rows)
    assert sum(r["quantity"].endswith("relative error") for r in rows) == 22
