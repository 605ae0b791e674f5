"""Orbax checkpoints of the FULL training state plus JSON metadata, under ``<run>/checkpoints/``.

One CheckpointManager keeps the latest two epochs and the best one by validation loss. Each
checkpoint holds ``state`` (params, batch_stats, opt_state, plateau state, step, epoch, best
val loss, epochs without improvement, RNG) and ``metadata`` (config, preprocessing_params,
epoch, best_val_loss, library versions).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from sar_jax.core.errors import SarJaxError


def library_versions() -> dict[str, str]:
    """Versions recorded in every checkpoint."""
    import flax
    import optax

    import sar_jax

    return {"sar_jax": sar_jax.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax": getattr(ocp, "__version__", "unknown"),
            "python": platform.python_version()}


def checkpoint_dir(run_dir: str | Path) -> Path:
    """``<run>/checkpoints`` as an absolute path (Orbax requires one)."""
    return (Path(run_dir) / "checkpoints").resolve()


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds at least one finished checkpoint."""
    return checkpoint_dir(run_dir).is_dir() and make_manager(run_dir, read_only=True).latest_step() is not None


def make_manager(run_dir: str | Path, *, read_only: bool = False) -> ocp.CheckpointManager:
    """The run's CheckpointManager: latest 2 + best 1 by ``val_loss``."""
    directory = checkpoint_dir(run_dir)
    if read_only and not directory.is_dir():
        raise SarJaxError(f"{run_dir}: no checkpoints/ folder; expected a sar_jax run directory")
    policy = pp.AnyPreservationPolicy([
        pp.LatestN(n=2),
        pp.BestN(get_metric_fn=lambda m: -m["val_loss"], n=1, keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, best_fn=lambda m: m["val_loss"], best_mode="min",
        create=not read_only, read_only=read_only, enable_async_checkpointing=False)
    handlers = {"state": ocp.StandardCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler()}
    return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def save(manager: ocp.CheckpointManager, step: int, state: Any, metadata: dict[str, Any],
         val_loss: float | None, data_iterator: grain.DatasetIterator | None = None) -> None:
    """Save the full state and metadata under the global training ``step`` (atomic: Orbax
    writes a temporary folder and commits it by rename). ``val_loss`` is None for a mid-epoch
    checkpoint written on interruption (it never competes for "best"); that one also holds the
    epoch's ``data_iterator`` state (Grain's checkpoint handler: one JSON file per process)."""
    metrics = None if val_loss is None else {"val_loss": float(val_loss)}
    items = {"state": ocp.args.StandardSave(state), "metadata": ocp.args.JsonSave(metadata)}
    if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    manager.wait_until_finished()


def select_step(manager: ocp.CheckpointManager, which: str) -> int:
    """The training step of the ``latest`` or ``best`` checkpoint."""
    step = manager.latest_step() if which == "latest" else manager.best_step()
    if step is None:
        raise SarJaxError(f"{manager.directory}: holds no checkpoint")
    return step


def _check_shapes(manager: ocp.CheckpointManager, step: int, abstract_state: Any, run_dir: str | Path) -> None:
    """Name every array whose stored shape differs from the model being restored into."""
    try:
        stored = manager.item_metadata(step)["state"]
    except Exception as exc:
        raise SarJaxError(f"{checkpoint_dir(run_dir)}/{step}: unreadable checkpoint metadata "
                          f"({type(exc).__name__}); the checkpoint is damaged or not an Orbax checkpoint") from None
    if stored is None:
        return
    def key(path: tuple) -> str:
        return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
    def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
        return {key(p): tuple(getattr(v, "shape", ())) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}

    stored_shapes, wanted = shapes(stored), shapes(abstract_state)
    bad = [f"{k}: checkpoint {stored_shapes[k]} vs model {wanted[k]}" for k in wanted
           if k in stored_shapes and stored_shapes[k] != wanted[k]]
    if bad:
        raise SarJaxError(f"{run_dir}: checkpoint is from a different architecture than the config "
                          f"({len(bad)} arrays differ; {'; '.join(bad[:4])}{' ...' if len(bad) > 4 else ''})")


def _placed(leaf: Any) -> Any:
    """A shape without a placement goes to this process's first device: Orbax would otherwise use
    the SAVED sharding, which names devices a smaller layout lacks ("Topology mismatch" when a
    checkpoint of several devices or processes is loaded for inference on one)."""
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                    sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    return leaf


def restore(run_dir: str | Path, abstract_state: Any, which: str = "latest",
            manager: ocp.CheckpointManager | None = None) -> tuple[Any, dict[str, Any]]:
    """Restore ``(state, metadata)`` of the latest or best checkpoint onto ``abstract_state``."""
    manager = manager or make_manager(run_dir, read_only=True)
    step = select_step(manager, which)
    _check_shapes(manager, step, abstract_state, run_dir)
    abstract_state = jax.tree.map(_placed, abstract_state)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), metadata=ocp.args.JsonRestore()))
    except Exception as exc:  # Orbax/tensorstore raise many types for damaged or foreign files
        raise SarJaxError(f"{checkpoint_dir(run_dir)}/{step}: cannot restore the checkpoint "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
    return restored["state"], dict(restored["metadata"])


def restore_data_iterator(manager: ocp.CheckpointManager, step: int, iterator: grain.DatasetIterator) -> None:
    """Move a fresh epoch ``iterator`` to where the mid-epoch checkpoint of ``step`` stopped."""
    try:
        manager.restore(step, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(iterator)))
    except Exception as exc:
        raise SarJaxError(f"{manager.directory}/{step}: cannot restore the data pipeline's position "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None


def read_metadata(run_dir: str | Path, which: str = "best") -> dict[str, Any]:
    """Only the JSON metadata (config, preprocessing_params, epoch, ...) of a checkpoint."""
    manager = make_manager(run_dir, read_only=True)
    step = select_step(manager, which)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    except Exception as exc:
        raise SarJaxError(f"{checkpoint_dir(run_dir)}/{step}: cannot read the checkpoint metadata "
                          f"({type(exc).__name__})") from None
    return dict(restored["metadata"])
