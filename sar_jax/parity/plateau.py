"""Check 5: the LR plateau schedule and early stopping, fed the same validation losses.

LR plateau off-by-one: torch's ``ReduceLROnPlateau(patience=p)`` reduces when the count of bad
epochs EXCEEDS ``p`` (on the (p+1)-th non-improving epoch in a row), optax's
``reduce_on_plateau(patience=q)`` when its count REACHES ``q``. ``sar_jax.training.state.make_plateau``
therefore passes ``q = lr_patience + 1``; this check verifies the two give the same per-epoch LR.
Known divergence not covered: torch skips a reduction smaller than its ``eps`` (1e-8, i.e.
after ~16 halvings of lr 1e-3), optax keeps reducing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from sar_jax.parity.rows import TOL, Row, row


def _f32(values: Iterable[float]) -> list[float]:
    return [float(np.float32(v)) for v in values]


def threshold_margin(losses: Sequence[float], rel: float = 1e-4) -> float:
    """Smallest |value - best * (1 - rel)| / best over the sequence, ``best`` following torch's
    rule (updated only on an improvement beyond the threshold): how close any decision is to
    the point where float32 (optax) and float64 (torch) rounding of the threshold could differ."""
    best, margin = math.inf, math.inf
    for v in losses:
        if math.isfinite(best):
            margin = min(margin, abs(v - best * (1 - rel)) / best)
        if v < best * (1 - rel):
            best = v
    return margin


def plateau_sequences() -> dict[str, list[float]]:
    """Validation-loss sequences (float32 values, as the JAX trainer produces) that exercise
    improvements, plateaus, exact ties, gains below / above the 1e-4 relative threshold. Every
    decision is at least 1e-6 (relative) away from the threshold (see :func:`threshold_margin`)."""
    rng = np.random.default_rng(0)
    below = [1.0]
    for _ in range(14):
        below.append(below[-1] * (1 - 0.3e-4))  # strict improvements, below the LR threshold
    above = [1.0]
    for _ in range(12):
        above.append(above[-1] * (1 - 2e-4))
    mixed = [1.0]
    for gain in rng.choice([0.0, 0.0, 0.2e-4, 0.45e-4, 1.5e-4, 3e-4], size=24):
        mixed.append(mixed[-1] * (1 - gain))
    walk = 1.0 + np.cumsum(rng.normal(0.0, 0.01, 40)) - 0.004 * np.arange(40)
    seqs = {
        "improve then plateau": _f32([1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.69,
                                      0.72, 0.72, 0.72, 0.72, 0.72, 0.72]),
        "exact ties": _f32([0.5] * 15),
        "gains below threshold": _f32(below + [below[-1]] * 3),
        "gains above threshold": _f32(above + [above[-1]] * 3),
        "mixed small gains": _f32(mixed),
        "noisy random walk": _f32(walk),
    }
    for name, seq in seqs.items():
        if threshold_margin(seq) < 1e-6:
            raise AssertionError(f"plateau sequence {name!r} has a decision within 1e-6 of the threshold")
    return seqs


def at_threshold_sequence() -> list[float]:
    """Values landing exactly on ``best * (1 - 1e-4)`` in float64 but not in float32 (the case
    where optax's float32 threshold and torch's float64 one may decide differently)."""
    return _f32([1.0, 0.9999, 0.9999, 0.9998000100001, 0.9998, 0.9997, 0.9997, 0.9996, 0.9996])


def torch_schedule(losses: Sequence[float], lr: float, factor: float, patience: int,
                   es_patience: int) -> tuple[list[float], int | None]:
    """Per-epoch LR (read before the epoch, as both trainers log it) and the epoch (1-based)
    at which early stopping fires, as ``sar_torch_ref``'s trainer computes them."""
    import torch

    from sar_jax.core.early_stopping import EarlyStopping

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=factor, patience=patience)
    stopper = EarlyStopping(es_patience)
    lrs, stop = [], None
    for epoch, v in enumerate(losses, 1):
        lrs.append(float(opt.param_groups[0]["lr"]))
        sched.step(v)
        stopper.update(v)
        if stopper.should_stop and stop is None:
            stop = epoch
    return lrs, stop


def jax_schedule(losses: Sequence[float], lr: float, factor: float, patience: int,
                 es_patience: int) -> tuple[list[float], int | None, int | None]:
    """The same with ``make_plateau`` (fed ``jnp.float32(val_loss)`` as ``sar_jax.train`` does):
    (LRs, stop epoch with EarlyStopping, stop epoch with sar_jax.train's own rule (float32 best,
    strict improvement, stop when epochs_without_improvement >= patience))."""
    import functools

    import jax
    import jax.numpy as jnp

    from sar_jax.core.early_stopping import EarlyStopping
    from sar_jax.training.state import make_plateau, plateau_update

    plateau = make_plateau({"lr_factor": factor, "lr_patience": patience})
    state = plateau.init({"w": jnp.zeros((1,), jnp.float32)})
    step = jax.jit(functools.partial(plateau_update, plateau=plateau))
    stopper = EarlyStopping(es_patience)
    best, bad = jnp.asarray(jnp.inf, jnp.float32), 0
    lrs, stop, stop_rule = [], None, None
    for epoch, v in enumerate(losses, 1):
        lrs.append(lr * float(state.scale))
        state = step(state, jnp.float32(v))
        stopper.update(v)
        if stopper.should_stop and stop is None:
            stop = epoch
        improved = v < float(best)
        best = jnp.asarray(min(v, float(best)), jnp.float32)
        bad = 0 if improved else bad + 1
        if bad >= es_patience and stop_rule is None:
            stop_rule = epoch
    return lrs, stop, stop_rule


TORCH_PLATEAU_EPS = 1e-8  # ReduceLROnPlateau(eps=1e-8): a reduction smaller than this is skipped


def check_plateau(lr: float = 1e-3) -> list[Row]:
    """Per-epoch LR sequences and early-stopping epochs, torch vs JAX, for every sequence and
    every (lr_factor in {0.5, 0.1}) x (lr_patience in {0, 1, 2, 3, 5}), early stopping patience
    lr_patience + 2.

    torch skips a reduction smaller than its ``eps`` (1e-8) and optax has no such floor, so LRs
    are compared up to the epoch at which torch's next reduction would fall below it (only
    reached with factor 0.1 here: lr 1e-3 -> 1e-8 in 5 reductions); the epochs left out are counted.
    """
    rows = []
    name = "5 LR plateau / early stopping"
    excluded_total = 0
    for seq_name, losses in plateau_sequences().items():
        worst_rel, mismatched, stop_diff, n, reductions, excluded = 0.0, 0, 0, 0, 0, 0
        for factor in (0.5, 0.1):
            for patience in (0, 1, 2, 3, 5):
                es_patience = patience + 2
                t_lrs, t_stop = torch_schedule(losses, lr, factor, patience, es_patience)
                j_lrs, j_stop, j_rule = jax_schedule(losses, lr, factor, patience, es_patience)
                cut = next((i + 1 for i, v in enumerate(t_lrs) if v - v * factor <= TORCH_PLATEAU_EPS), len(t_lrs))
                excluded += len(t_lrs) - cut
                t_lrs, j_lrs = t_lrs[:cut], j_lrs[:cut]
                worst_rel = max(worst_rel, max(abs(a - b) / b for a, b in zip(j_lrs, t_lrs)))
                # epochs at which one side reduced the LR and the other did not
                t_red = [t_lrs[i + 1] < t_lrs[i] for i in range(len(t_lrs) - 1)]
                j_red = [j_lrs[i + 1] < j_lrs[i] * (1 - 1e-6) for i in range(len(j_lrs) - 1)]
                mismatched += sum(a != b for a, b in zip(t_red, j_red))
                reductions += sum(t_red)
                stop_diff += int(t_stop != j_stop) + int(t_stop != j_rule)
                n += 1
        excluded_total += excluded
        rows.append(row(name, f"{seq_name} ({len(losses)} epochs x {n} settings, {reductions} LR reductions): "
                              "LR max rel diff", worst_rel, TOL["lr_rel"]))
        rows.append(row(name, f"{seq_name}: epochs where only one side reduced the LR", mismatched, 0, op="=="))
        rows.append(row(name, f"{seq_name}: settings where early stopping fires at another epoch "
                              "(EarlyStopping and sar_jax.train's rule vs torch)", stop_diff, 0, op="=="))
    rows.append(row(name, "epochs not compared: torch's eps=1e-8 floor reached (factor 0.1 only)",
                    excluded_total, op="info"))
    at = at_threshold_sequence()
    t_lrs, _ = torch_schedule(at, lr, 0.5, 0, 2)
    j_lrs, _, _ = jax_schedule(at, lr, 0.5, 0, 2)
    rows.append(row(name, "values exactly on the 1e-4 threshold (float32 vs float64 rounding of it): "
                          "epochs with a different LR (lr_patience 0)",
                    sum(a != b for a, b in zip(t_lrs, j_lrs)), op="info"))
    return rows
