"""Early stopping on the validation loss, shared by both trainers."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """Stops after ``patience`` consecutive epochs without a strict improvement of the best value."""

    patience: int
    best: float = math.inf
    bad_epochs: int = 0

    def update(self, value: float) -> bool:
        """Record one epoch's value; returns True if it is a new best."""
        if value < self.best:
            self.best = float(value)
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs in a row have not improved."""
        return self.bad_epochs >= self.patience
