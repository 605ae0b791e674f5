"""``python -m sar_jax.reconstruct``: reconstruct full scenes (implemented in :mod:`sar_jax.inference.reconstruct`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.inference.reconstruct import main, setup_args

__all__ = ["cli", "main", "setup_args"]


def cli() -> int:
    """The ``sar-jax-reconstruct`` command: the same ``main`` as ``python -m sar_jax.reconstruct``."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(cli())
