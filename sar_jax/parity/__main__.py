"""``python -m sar_jax.parity``: the JAX <-> PyTorch parity report (:mod:`sar_jax.parity.report`)."""

import sys

from sar_jax.core.cli import run_main
from sar_jax.parity.report import main

if __name__ == "__main__":
    sys.exit(run_main(main))
