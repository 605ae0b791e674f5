"""The numerical parity checks (sar_jax.parity: forward, losses, gradients, optimizer, plateau,
lockstep), each held to its tolerance."""

from __future__ import annotations

import numpy as np

from sar_jax.parity import plateau
from sar_jax.parity.forward import check_forward
from sar_jax.parity.gradients import check_gradients
from sar_jax.parity.lockstep import check_lockstep, lockstep
from sar_jax.parity.losses import check_losses, check_ssim
from sar_jax.parity.optimizer import check_optimizer


def test_forward_full_baseline_256(check_rows):
    rows = check_forward(size=256, batch=2)
    check_rows(rows)
    assert {r["quantity"].split(" (")[0] for r in rows} >= {"eval x_hat max|diff|", "train x_hat max|diff|",
                                                            "updated BN running_mean max|diff|",
                                                            "updated BN running_var max|diff|"}


def test_ssim_synthetic_pairs(check_rows):
    check_rows(check_ssim(None))


def test_ssim_real_sar_pairs(check_rows, shared_sar_dir):
    rows = check_ssim(shared_sar_dir)
    check_rows(rows)
    assert sum("real SAR" in r["quantity"] for r in rows) >= 7


def test_combined_loss_psnr_and_per_image_metrics(check_rows, shared_sar_dir):
    check_rows(check_losses(shared_sar_dir))


def test_gradients_per_parameter(check_rows):
    rows = check_gradients()
    check_rows(rows)
    assert sum(r["quantity"].endswith("relative error") for r in rows) == 22


def test_clip_and_adam_update(check_rows):
    rows = check_optimizer()
    check_rows(rows)
    assert any("3/3 steps clipped" in r["quantity"] for r in rows)
    assert any("0/3 steps clipped" in r["quantity"] for r in rows)


def test_plateau_schedule_and_early_stopping(check_rows):
    check_rows(plateau.check_plateau())


def test_plateau_off_by_one_is_documented_and_real():
    """torch patience p reduces on the (p+1)-th bad epoch; optax patience p on the p-th."""
    import jax.numpy as jnp
    from optax import contrib

    from sar_jax.training.state import make_plateau

    assert "patience + 1" in make_plateau.__doc__ and "off-by-one" in plateau.__doc__
    losses = [1.0, 1.0, 1.0, 1.0, 1.0]
    torch_lrs, _ = plateau.torch_schedule(losses, 1.0, 0.5, 2, 99)
    plain = contrib.reduce_on_plateau(factor=0.5, patience=2, rtol=1e-4, atol=0.0)
    state, lrs = plain.init({"w": jnp.zeros(1)}), []
    for v in losses:
        lrs.append(float(state.scale))
        state = plain.update(updates={}, state=state, value=jnp.float32(v))[1]
    assert torch_lrs == [1.0, 1.0, 1.0, 1.0, 0.5]  # reduced after the 3rd bad epoch
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5]  # optax with the same number: one epoch early
    assert plateau.jax_schedule(losses, 1.0, 0.5, 2, 99)[0] == torch_lrs  # make_plateau fixes it


def test_plateau_sequences_stay_clear_of_the_threshold():
    for name, seq in plateau.plateau_sequences().items():
        assert plateau.threshold_margin(seq) >= 1e-6, name
    assert plateau.threshold_margin(plateau.at_threshold_sequence()) < 1e-6


def test_lockstep_training(check_rows):
    result = lockstep(steps=50, reference_floor=False)
    check_rows(check_lockstep(result=result))
    assert len(result["jax_loss"]) == len(result["torch_loss"]) == 50
    assert np.mean(result["torch_loss"][-10:]) < np.mean(result["torch_loss"][:10])  # it did train
