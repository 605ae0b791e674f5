"""``python -m sar_jax.evaluate``: evaluate a checkpoint (implemented in :mod:`sar_jax.inference.evaluate`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.inference.evaluate import main, setup_args

__all__ = ["cli", "main", "setup_args"]


def cli() -> int:
    """The ``sar-jax-evaluate`` command: the same ``main`` as ``python -m sar_jax.evaluate``."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(cli())
