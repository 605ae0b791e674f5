"""Data parallelism on JAX's own runtime: a ``jax.sharding.Mesh`` with one ``data`` axis.

Batches are sharded along ``data``, the train state is replicated, and because the steps are
jit-compiled over global arrays, BatchNorm means and the loss are computed over the GLOBAL batch
(N devices x b == one device x N*b). Multi-host runs call :func:`initialize` first
(``jax.distributed``); each process then feeds only its own rows of every batch.
"""

from __future__ import annotations

import atexit
import contextlib
import traceback
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sar_jax.core.errors import SarJaxError
from sar_jax.training import process_link, runtime_log_filter

HEARTBEAT_TIMEOUT_S = 60  # JAX's own dead-peer detection (fatal); the process link acts within ~20 s
_link: process_link.ProcessLink | None = None


def initialize(coordinator: str, num_processes: int, process_id: int, timeout: float = 60.0) -> None:
    """Join a multi-process run: meet the other processes over a :mod:`process_link` (fails
    with :class:`SarJaxError` after ``timeout`` seconds if they disagree or do not all come),
    then ``jax.distributed.initialize`` with explicit timeouts; CPU runs use gloo collectives."""
    global _link
    if not 0 <= process_id < num_processes:
        raise SarJaxError(f"process_id {process_id}: expected 0 <= process_id < num_processes ({num_processes})")
    _link = process_link.connect(coordinator, num_processes, process_id, timeout)
    runtime_log_filter.install(f"process {process_id} of {num_processes}")
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id,
                               initialization_timeout=max(int(timeout), 1),
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
                               shutdown_timeout_seconds=max(int(timeout), 1))
    _link.watch(process_link.exit_now)
    atexit.register(_link.close, goodbye=True)  # runs before JAX's own shutdown (registered earlier)


@contextlib.contextmanager
def errors_stop_every_process() -> Iterator[None]:
    """In a multi-process run, an error in this process prints one ``error:`` line and ends it at
    once (the others see its link close and stop too, instead of waiting in a collective or in
    JAX's shutdown barrier); a normal exit says goodbye to the others. No-op for one process."""
    if _link is None:
        yield
        return
    where = f"process {_link.process_id} of {_link.num_processes}"
    try:
        yield
    except SarJaxError as exc:
        process_link.exit_now(f"{where}: {exc}")
    except KeyboardInterrupt:
        process_link.exit_now(f"{where}: interrupted", code=130)
    except Exception as exc:
        # A collective fails (JaxRuntimeError, or ValueError from gloo) the moment a peer dies, and
        # the link sees that peer go at the same moment: its report, the cause, is the one shown.
        if _link.lost.wait(2.0):
            process_link.exit_now("a peer stopped")  # never printed: the link's report came first
        if isinstance(exc, jax.errors.JaxRuntimeError):
            process_link.exit_now(f"{where}: an operation across the processes failed "
                                  f"({str(exc).splitlines()[0][:200]})")
        traceback.print_exc()  # a bug: show where, then stop without waiting for the others
        process_link.exit_now(f"{where}: stopped by the exception above", code=1)


def make_mesh(devices: str | int) -> Mesh:
    """``train.devices``: ``"auto"`` (every device of every process) or a count."""
    available = jax.devices()
    if devices == "auto":
        chosen = available
    else:
        if devices > len(available):
            raise SarJaxError(f"train.devices = {devices} but only {len(available)} devices are visible")
        if jax.process_count() > 1 and devices != len(available):
            raise SarJaxError(f"train.devices = {devices}: a multi-process run uses every device "
                              f"({len(available)}); set train.devices to \"auto\"")
        chosen = available[:devices]
    return Mesh(np.array(chosen), ("data",))


def check_batch(batch_size: int, mesh: Mesh) -> None:
    """The global batch must split evenly over the devices."""
    if batch_size % mesh.size:
        raise SarJaxError(f"train.batch_size = {batch_size} does not divide evenly over {mesh.size} "
                          f"devices; use a multiple of {mesh.size}")


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree (the train state) on every device of the mesh.

    Across processes each leaf is assembled from per-device copies of this process's value
    (``jax.make_array_from_single_device_arrays``, no collective) instead of ``jax.device_put``:
    in JAX 0.10.2 ``device_put`` of a single-device ``jax.Array`` onto a replicated sharding
    that spans processes with ONE device each returns a broken array. ``_array_shard_arg``
    (jax/_src/array.py) takes the one-device source and the target for "the same sharding"
    (same replicated HLO sharding, one addressable device each), copies the buffer straight
    to the GLOBAL sharding, and the result handler then wraps that global array as if it were
    a single-device shard; its ``addressable_shards`` raises "the input arrays must have one
    shard each. An argument array had 2 shard(s)", first in Orbax's save. With two or more
    devices per process the shard counts differ and JAX takes its correct path.
    """
    sharding = NamedSharding(mesh, PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return leaf if leaf.sharding == sharding else jax.device_put(leaf, sharding)
        value = np.asarray(leaf)
        devices = sharding.addressable_devices_indices_map(value.shape)
        return jax.make_array_from_single_device_arrays(
            value.shape, sharding, [jax.device_put(value, d) for d in devices])

    return jax.tree.map(put, tree)


def shard_batch(local_batch: np.ndarray, mesh: Mesh) -> jax.Array:
    """This process's rows -> a global array sharded along ``data``."""
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    if jax.process_count() == 1:
        return jax.device_put(local_batch, sharding)
    global_shape = (local_batch.shape[0] * jax.process_count(),) + local_batch.shape[1:]
    return jax.make_array_from_process_local_data(sharding, local_batch, global_shape)


def to_host(tree: Any) -> Any:
    """Fetch (possibly multi-host) arrays as numpy, whole."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def is_main_process() -> bool:
    """Only process 0 writes logs, TensorBoard events and figures."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Barrier across processes (no-op for one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def agreed_signal(received: list[int]) -> int:
    """The signal every process stops for: this process's first one (0: none) with one process, the
    largest over all processes with several (a collective: every process calls it at the same step),
    so that a signal heard by any process stops all of them at one step."""
    mine = received[0] if received else 0
    if jax.process_count() == 1:
        return mine
    return int(np.max(multihost_utils.process_allgather(np.int32(mine))))


def local_copy(tree: Any) -> Any:
    """Numpy copy of a REPLICATED pytree from this process's first device (no collective)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def scalar(x: Any) -> float | int:
    """A replicated 0-d array as a Python number (works for multi-host arrays)."""
    return np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x).item()
