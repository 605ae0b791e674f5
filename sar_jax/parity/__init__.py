"""JAX <-> PyTorch: weight conversion and the parity suite (needs torch)."""
