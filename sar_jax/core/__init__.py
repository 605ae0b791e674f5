"""Framework-neutral core: config, errors, run directory, TensorBoard, figures, early stopping, CLI.

Imports neither JAX nor torch; the only part of ``sar_jax`` that ``sar_torch_ref`` uses.
"""
