"""``python -m sar_jax.convert``: convert checkpoints between PyTorch and JAX
(implemented in :mod:`sar_jax.parity.checkpoints`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.parity.checkpoints import main, setup_args

__all__ = ["main", "setup_args"]

if __name__ == "__main__":
    sys.exit(run_main(main))
