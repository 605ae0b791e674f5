"""Eval-mode forward passes in micro-batches on CPU (eval-mode BatchNorm is per sample, so the
results are the whole batch's up to float32 rounding: XLA may block a conv differently).

One XLA:CPU execution over a whole batch maps fresh memory for all of its temporaries on every
call (~15 MB per 256x256 image for this model, paid again as page faults each call), and the
activations stream through memory rather than cache. Running the same jitted function over
micro-batches of about two 256x256 images (``jax.lax.map``) reuses one small set of buffers
(outputs bitwise identical; measurements in ``benchmarks/results/ANALYSIS.md``); small images
gain nothing, so they stay whole. GPUs want the whole batch, and a batch sharded over several
devices must not be re-split, so other platforms and multi-device runs always get the whole
batch. The same rule, with a budget in activation elements, sizes the batch chunks of each
convolution in :mod:`sar_jax.ops.conv`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

#: Pixels per micro-batch on CPU (two 256x256 images).
CPU_PIXELS_PER_MICRO_BATCH = 2 * 256 * 256


def micro_batch_size(batch: int, per_sample: int, budget: int = CPU_PIXELS_PER_MICRO_BATCH,
                     platform: str | None = None) -> int:
    """Samples per micro-batch for ``batch`` samples of ``per_sample`` units (pixels, or
    elements) each, at most ``budget`` units per micro-batch; ``batch`` (no splitting) off CPU,
    with several devices, or when one micro-batch would hold the whole batch."""
    platform = platform or jax.default_backend()
    if platform != "cpu" or jax.device_count() > 1:
        return batch
    return max(1, min(batch, budget // max(1, per_sample)))


def map_in_chunks(fn: Callable[[jax.Array], Any], x: jax.Array, chunk: int) -> Any:
    """``fn(x)`` for a per-sample ``fn`` (batch-leading input and outputs), computed over chunks
    of ``chunk`` samples (the whole batch at once if ``chunk`` covers it); inside ``jax.jit``."""
    if chunk >= x.shape[0]:
        return fn(x)
    # lax.map vmaps its function over each chunk; fn sees a batch of one per sample
    return jax.lax.map(lambda xi: jax.tree.map(lambda a: a[0], fn(xi[None])), x, batch_size=chunk)


def map_micro_batches(fn: Callable[[jax.Array], Any], x: jax.Array, pixels_per_sample: int) -> Any:
    """``fn(x)`` for a per-sample ``fn``, computed in micro-batches (:func:`micro_batch_size`)."""
    return map_in_chunks(fn, x, micro_batch_size(x.shape[0], pixels_per_sample))
