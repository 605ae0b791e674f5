"""Report rows of the parity suite, their tolerances, and the differences they measure.

Every check returns a list of rows ``{"check", "quantity", "tolerance", "observed", "pass"}``;
``tests/parity`` asserts them and ``python -m sar_jax.parity`` writes them to a report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

Row = dict[str, Any]

#: Tolerances, one per quantity family.
TOL = {"forward": 1e-5, "bn_stats": 1e-6, "ssim": 1e-5, "loss": 1e-5, "grad_rel": 1e-4, "adam": 1e-6,
       "lr_rel": 1e-6, "lockstep_loss_rel": 1e-3, "lockstep_param_rel": 1e-3, "psnr_db": 0.01}


def row(check: str, quantity: str, observed: float, tolerance: float | None = None, *, op: str = "<=",
        tolerance_text: str | None = None) -> Row:
    """One report row; ``op`` is ``<=`` (observed at most tolerance), ``==``, or ``info`` (context
    for the reader, never fails)."""
    observed = float(observed)
    if op == "info":
        return {"check": check, "quantity": quantity, "tolerance": tolerance_text or "info",
                "observed": observed, "pass": True, "info": True}
    ok = observed == tolerance if op == "==" else (math.isfinite(observed) and observed <= tolerance)
    return {"check": check, "quantity": quantity, "tolerance": tolerance_text or f"{op} {tolerance:g}",
            "observed": observed, "pass": bool(ok)}


def failures(rows: Iterable[Row]) -> list[Row]:
    """The rows that failed."""
    return [r for r in rows if not r["pass"]]


def max_abs(a: Any, b: Any) -> float:
    """max |a - b| over the elements, in float64."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def rel_err(a: Any, b: Any) -> float:
    """||a - b|| / ||b|| (Frobenius norms, float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
