"""Inference: loading runs, evaluation, full-scene reconstruction."""
