"""Framework-neutral SAR data pipeline: readers, preprocessing, synthetic scenes,
patching/splitting and batching. Imports neither JAX nor torch."""
