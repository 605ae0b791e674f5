"""Side-by-side throughput benchmarks of the JAX system and the PyTorch reference.

``python -m benchmarks.throughput --help``; results are committed under ``benchmarks/results/``.
"""
