"""Training: state and jitted steps, losses, the loop, checkpointing, distribution."""
