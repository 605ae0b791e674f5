"""``python -m sar_jax.reconstruct``: reconstruct full scenes (implemented in :mod:`sar_jax.inference.reconstruct`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.inference.reconstruct import main, setup_args

__all__ = ["main", "setup_args"]

if __name__ == "__main__":
    sys.exit(run_main(main))
