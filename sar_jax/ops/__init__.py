"""Exact convolution arithmetic (custom VJPs) and CPU batch chunking under the Flax layers."""
