"""``python -m sar_jax.train``: train the autoencoder (implemented in :mod:`sar_jax.training.loop`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.training.loop import main, setup_args

__all__ = ["cli", "main", "setup_args"]


def cli() -> int:
    """The ``sar-jax-train`` command: the same ``main`` as ``python -m sar_jax.train``."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(cli())
