"""``python -m sar_jax.parity``: the JAX <-> PyTorch parity report (:mod:`sar_jax.parity.report`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.parity.report import main, setup_args

__all__ = ["cli", "main", "setup_args"]


def cli() -> int:
    """The ``sar-jax-parity`` command: the same ``main`` as ``python -m sar_jax.parity``."""
    return run_main(main)


if __name__ == "__main__":
    sys.exit(cli())
