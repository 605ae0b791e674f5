"""sar_jax.parity.plateau: LR plateau schedule and early stopping vs torch, and the off-by-one."""

from __future__ import annotations

from sar_jax.parity import plateau


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
