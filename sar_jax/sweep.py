"""``python -m sar_jax.sweep``: train and score a grid of configs (implemented in :mod:`sar_jax.training.sweep`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.training.sweep import main, setup_args

__all__ = ["cli", "main", "setup_args"]


def cli() -> int:
    """The ``sar-jax-sweep`` command: the same ``main`` as ``python -m sar_jax.sweep``."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(cli())
