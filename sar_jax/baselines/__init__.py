"""Classical baselines the autoencoder is judged against: despeckling filters and image codecs.

Framework-neutral (numpy, scipy, Pillow): imports neither JAX nor torch.
"""
