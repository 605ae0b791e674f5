"""sar_jax.parity.lockstep: both models trained in lockstep stay together."""

from __future__ import annotations

import numpy as np

from sar_jax.parity.lockstep import check_lockstep, lockstep


def test_lockstep_training(check_rows):
    result = lockstep(steps=50, reference_floor=False)
    check_rows(check_lockstep(result=result))
    assert len(result["jax_loss"]) == len(result["torch_loss"]) == 50
    assert np.mean(result["torch_loss"][-10:]) < np.mean(result["torch_loss"][:10])  # it did train
