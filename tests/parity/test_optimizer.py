"""sar_jax.parity.optimizer: clip + Adam updates vs torch."""

from __future__ import annotations

from sar_jax.parity.optimizer import check_optimizer


def test_clip_and_adam_update(check_rows):
    rows = check_optimizer()
    check_rows(rows)
    assert any("3/3 steps clipped" in r["quantity"] for r in rows)
    assert any("0/3 steps clipped" in r["quantity"] for r in rows)
