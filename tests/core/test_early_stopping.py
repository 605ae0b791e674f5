"""Early stopping on the validation loss (sar_jax.early_stopping)."""

from __future__ import annotations

import math

import pytest

from sar_jax.core.early_stopping import EarlyStopping


def _run(patience, values):
    """Epoch (1-based) at which training stops, or None."""
    stopper = EarlyStopping(patience)
    for epoch, value in enumerate(values, 1):
        stopper.update(value)
        if stopper.should_stop:
            return epoch
    return None


@pytest.mark.parametrize("patience", [1, 2, 3, 5])
def test_fires_exactly_after_patience_non_improving_epochs(patience):
    values = [5.0, 4.0, 3.0] + [3.5] * (patience + 3)
    assert _run(patience, values) == 3 + patience
    assert _run(patience, values[:3 + patience - 1]) is None


def test_ties_are_not_improvements():
    stopper = EarlyStopping(patience=2)
    assert stopper.update(1.0) is True
    assert stopper.update(1.0) is False and stopper.bad_epochs == 1 and not stopper.should_stop
    assert stopper.update(1.0) is False and stopper.should_stop
    assert stopper.best == 1.0


def test_improvement_resets_the_count():
    stopper = EarlyStopping(patience=3)
    outcomes = [stopper.update(v) for v in (2.0, 2.5, 2.5, 1.9, 3.0, 3.0)]
    assert outcomes == [True, False, False, True, False, False]
    assert stopper.best == 1.9 and stopper.bad_epochs == 2 and not stopper.should_stop
    assert stopper.update(1.9) is False and stopper.should_stop


def test_nan_never_improves():
    stopper = EarlyStopping(patience=2)
    stopper.update(1.0)
    assert stopper.update(math.nan) is False
    assert stopper.update(math.nan) is False
    assert stopper.should_stop and stopper.best == 1.0
    assert EarlyStopping(patience=1).update(math.inf) is False
