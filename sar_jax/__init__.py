"""sar-jax: a JAX/Flax convolutional autoencoder for SAR imagery.

This package root imports neither JAX nor torch, so the framework-neutral
modules (``config``, ``data``, ``rundir``, ``visualize``) can be shared by the
PyTorch reference in ``sar_torch_ref``.
"""

__version__ = "0.1.0"
