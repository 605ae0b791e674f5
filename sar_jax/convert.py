"""``python -m sar_jax.convert``: convert checkpoints between PyTorch and JAX
(implemented in :mod:`sar_jax.parity.checkpoints`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.parity.checkpoints import main, setup_args

__all__ = ["cli", "main", "setup_args"]


def cli() -> int:
    """The ``sar-jax-convert`` command: the same ``main`` as ``python -m sar_jax.convert``."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(cli())
