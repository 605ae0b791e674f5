"""Flax layers with PyTorch semantics and the SAR autoencoder."""
