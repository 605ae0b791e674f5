"""The trainer's TensorBoard images, histograms and device memory, once per epoch."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from sar_jax.core import tb
from sar_jax.training import distributed
from sar_jax.training.state import TrainState


def _named_leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [("/".join(str(getattr(k, "key", k)) for k in path), np.asarray(v)) for path, v in flat]


def _memory_stats() -> dict[str, float]:
    stats = jax.local_devices()[0].memory_stats()
    if not stats:
        return {}
    return {k.replace("bytes", "mb"): v / 2**20 for k, v in stats.items()
            if k in ("bytes_in_use", "peak_bytes_in_use")}


def log_images_and_histograms(writer: Any, steps: dict[str, Any], state: TrainState, samples: jax.Array,
                              grad_batch: jax.Array, epoch: int, log_cfg: dict[str, Any]) -> None:
    """TensorBoard images, histograms and device memory (every process computes, process 0 writes)."""
    x_hat = x_grads = None
    if epoch % log_cfg["image_every"] == 0:
        x_hat = steps["predict"]({"params": state.params, "batch_stats": state.batch_stats}, samples)
    if epoch % log_cfg["histogram_every"] == 0:
        x_grads = steps["gradients"](state, grad_batch)
    if writer is None:
        return
    if x_hat is not None:
        tb.log_reconstructions(writer, distributed.local_copy(samples), distributed.local_copy(x_hat), epoch)
    if x_grads is not None:
        tb.log_histograms(writer, "weights", _named_leaves(distributed.local_copy(state.params)), epoch)
        tb.log_histograms(writer, "grads", _named_leaves(distributed.local_copy(x_grads)), epoch)
    tb.log_memory(writer, _memory_stats(), epoch)
    writer.flush()
