"""sar_jax.parity.forward: forward passes and BatchNorm updates held to their tolerances."""

from __future__ import annotations

from sar_jax.parity.forward import check_forward


def test_forward_full_baseline_256(check_rows):
    rows = check_forward(size=256, batch=2)
    check_rows(rows)
    assert {r["quantity"].split(" (")[0] for r in rows} >= {"eval x_hat max|diff|", "train x_hat max|diff|",
                                                            "updated BN running_mean max|diff|",
                                                            "updated BN running_var max|diff|"}
