"""``python -m sar_jax.train``: train the autoencoder (implemented in :mod:`sar_jax.training.loop`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.training.loop import main, setup_args

__all__ = ["main", "setup_args"]

if __name__ == "__main__":
    sys.exit(run_main(main))
