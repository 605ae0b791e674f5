"""``python -m sar_jax.evaluate``: evaluate a checkpoint (implemented in :mod:`sar_jax.inference.evaluate`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.inference.evaluate import main, setup_args

__all__ = ["main", "setup_args"]

if __name__ == "__main__":
    sys.exit(run_main(main))
