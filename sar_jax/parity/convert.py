"""Convert weights and checkpoints between ``sar_torch_ref`` (PyTorch) and ``sar_jax`` (Flax).

Usage::

    python -m sar_jax.convert --from-torch CKPT.pt --out RUN_DIR [--overwrite]
    python -m sar_jax.convert --to-torch RUN_DIR --out MODEL.pt [--which best|latest]

The conversion is a fixed table (:func:`conversion_table`): every torch state_dict key maps to
one Flax variable path with a fixed axis permutation, because the Flax layers keep PyTorch's
plain 5x5 parameter layout (see :mod:`sar_jax.nn.layers`):

- ``Conv2d`` weight ``(out, in, 5, 5)`` <-> ``StridedConv`` kernel ``(5, 5, in, out)``: ``W.transpose(2, 3, 1, 0)``
- ``ConvTranspose2d`` weight ``(in, out, 5, 5)`` <-> ``TransposedConv`` kernel ``(5, 5, in, out)``: ``W.transpose(2, 3, 0, 1)``
- ``BatchNorm2d`` weight/bias <-> ``bn/scale``/``bn/bias`` (params); running_mean/running_var
  <-> ``bn/mean``/``bn/var`` (batch_stats); biases are copied unchanged.
- ``num_batches_tracked`` has no Flax variable: it equals the number of training steps, so a
  converted checkpoint carries it in ``TrainState.step`` (and back).

Permutations of float32 arrays are exact, so torch -> JAX -> torch is bit-exact. Any missing,
unexpected or mis-shaped key raises ONE :class:`SarJaxError` listing them all.

A converted run directory holds ``config.json``, an Orbax checkpoint (the torch checkpoint's
epoch; keyed by its step = ``num_batches_tracked``) with fresh Adam moments, and the torch run's LR-plateau and early-stopping
counters, so ``sar_jax.train --resume`` continues it; the torch run's ``training.log`` is copied
when the checkpoint lies in a run directory.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.errors import SarJaxError

#: torch (Conv2d) weight -> Flax kernel, and torch (ConvTranspose2d) weight -> Flax kernel.
PERMUTATIONS = {"conv": (2, 3, 1, 0), "deconv": (2, 3, 0, 1), "vector": None, "count": None}
_BN_FIELDS = (("weight", "params", "scale"), ("bias", "params", "bias"),
              ("running_mean", "batch_stats", "mean"), ("running_var", "batch_stats", "var"))
KERNEL_SIZE = 5


@dataclass(frozen=True)
class Entry:
    """One row of the conversion table.

    ``collection``/``path``: the Flax variable (``None``/``()`` for ``num_batches_tracked``);
    ``kind``: ``conv``, ``deconv``, ``vector`` or ``count``; ``layer``: index into the layer
    dimension list of :func:`layer_channels`.
    """

    torch_key: str
    collection: str | None
    path: tuple[str, ...]
    kind: str
    layer: int

    @property
    def flax_name(self) -> str:
        return "/".join((self.collection or "-",) + self.path) if self.collection else "(TrainState.step)"


def conversion_table() -> tuple[Entry, ...]:
    """All rows, in the order of ``sar_torch_ref.models.SARAutoencoder().state_dict()``."""
    rows: list[Entry] = []
    layer = 0
    for part, conv, kind in (("encoder", "conv", "conv"), ("decoder", "deconv", "deconv")):
        for i in range(3):
            blk = f"block{i}"
            rows.append(Entry(f"{part}.{blk}.{conv}.weight", "params", (part, blk, conv, "kernel"), kind, layer))
            for tkey, coll, fkey in _BN_FIELDS:
                rows.append(Entry(f"{part}.{blk}.bn.{tkey}", coll, (part, blk, "bn", fkey), "vector", layer))
            rows.append(Entry(f"{part}.{blk}.bn.num_batches_tracked", None, (), "count", layer))
            layer += 1
        rows.append(Entry(f"{part}.final.weight", "params", (part, "final", "kernel"), kind, layer))
        rows.append(Entry(f"{part}.final.bias", "params", (part, "final", "bias"), "vector", layer))
        layer += 1
    return tuple(rows)


TABLE = conversion_table()


def layer_channels(in_channels: int, base: int, latent: int) -> list[tuple[int, int]]:
    """(in, out) channels of the 8 conv layers in table order."""
    b = base
    return [(in_channels, b), (b, 2 * b), (2 * b, 4 * b), (4 * b, latent),
            (latent, 4 * b), (4 * b, 2 * b), (2 * b, b), (b, in_channels)]


def _torch_shape(entry: Entry, dims: list[tuple[int, int]]) -> tuple[int, ...]:
    cin, cout = dims[entry.layer]
    k = KERNEL_SIZE
    if entry.kind == "conv":
        return (cout, cin, k, k)
    if entry.kind == "deconv":
        return (cin, cout, k, k)
    if entry.kind == "count":
        return ()
    return (cout,)


def _flax_shape(entry: Entry, dims: list[tuple[int, int]]) -> tuple[int, ...]:
    cin, cout = dims[entry.layer]
    if entry.kind in ("conv", "deconv"):
        return (KERNEL_SIZE, KERNEL_SIZE, cin, cout)
    return (cout,)


def _dims_from_cfg(model_cfg: Mapping[str, Any]) -> list[tuple[int, int]]:
    if model_cfg.get("kernel_size", KERNEL_SIZE) != KERNEL_SIZE:
        raise SarJaxError(f"model.kernel_size = {model_cfg['kernel_size']}: only 5 is supported")
    return layer_channels(model_cfg["in_channels"], model_cfg["base_channels"], model_cfg["latent_channels"])


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in getattr(value, "shape", ()))


def _raise_problems(what: str, missing: list[str], unexpected: list[str], bad: list[str]) -> None:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected)}")
    if bad:
        parts.append(f"{len(bad)} mis-shaped or mistyped: {'; '.join(bad)}")
    if parts:
        raise SarJaxError(f"{what} does not match the SAR autoencoder: " + " | ".join(parts))


# --------------------------------------------------------------------------- torch -> Flax


def _infer_torch_dims(state_dict: Mapping[str, Any]) -> list[tuple[int, int]] | None:
    first, last = state_dict.get("encoder.block0.conv.weight"), state_dict.get("encoder.final.weight")
    if first is None or last is None or len(_shape(first)) != 4 or len(_shape(last)) != 4:
        return None
    return layer_channels(_shape(first)[1], _shape(first)[0], _shape(last)[0])


def _check_torch(state_dict: Mapping[str, Any], model_cfg: Mapping[str, Any] | None,
                 what: str) -> None:
    if not isinstance(state_dict, Mapping):
        raise SarJaxError(f"{what}: expected a state_dict (a mapping of names to tensors), "
                          f"got {type(state_dict).__name__}")
    known = {e.torch_key for e in TABLE}
    missing = [e.torch_key for e in TABLE if e.torch_key not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in known]
    bad: list[str] = []
    dims = _dims_from_cfg(model_cfg) if model_cfg is not None else _infer_torch_dims(state_dict)
    if dims is None and "encoder.block0.conv.weight" in state_dict and "encoder.final.weight" in state_dict:
        bad.append("cannot infer the architecture: encoder.block0.conv.weight and encoder.final.weight "
                   "must be 4-D")
    for e in TABLE:
        if e.torch_key not in state_dict:
            continue
        value = state_dict[e.torch_key]
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            bad.append(f"{e.torch_key} is a {type(value).__name__}, not a tensor")
            continue
        is_float = getattr(value, "is_floating_point", lambda: np.issubdtype(value.dtype, np.floating))()
        if e.kind == "count" and is_float:
            bad.append(f"{e.torch_key} has dtype {value.dtype}, expected an integer")
        elif e.kind != "count" and not is_float:
            bad.append(f"{e.torch_key} has dtype {value.dtype}, expected floating point")
        if dims is not None and _shape(value) != _torch_shape(e, dims):
            bad.append(f"{e.torch_key} has shape {_shape(value)}, expected {_torch_shape(e, dims)}")
    _raise_problems(what, missing, unexpected, bad)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def torch_to_flax(state_dict: Mapping[str, Any], model_cfg: Mapping[str, Any] | None = None,
                  *, what: str = "torch state_dict") -> dict[str, Any]:
    """A ``sar_torch_ref`` state_dict -> ``{"params": ..., "batch_stats": ...}`` (float32 jax arrays).

    ``model_cfg`` (a config's ``model`` section), if given, fixes the expected shapes; otherwise
    they are inferred from the first and last encoder convs. ``num_batches_tracked`` is checked
    but not part of the result: read it with :func:`num_batches_tracked`.
    """
    import jax.numpy as jnp

    _check_torch(state_dict, model_cfg, what)
    out: dict[str, Any] = {"params": {}, "batch_stats": {}}
    for e in TABLE:
        if e.collection is None:
            continue
        arr = _to_numpy(state_dict[e.torch_key]).astype(np.float32, copy=False)
        perm = PERMUTATIONS[e.kind]
        if perm is not None:
            arr = arr.transpose(perm)
        node = out[e.collection]
        for name in e.path[:-1]:
            node = node.setdefault(name, {})
        node[e.path[-1]] = jnp.asarray(np.ascontiguousarray(arr))
    return out


def num_batches_tracked(state_dict: Mapping[str, Any]) -> int:
    """The BatchNorm layers' common ``num_batches_tracked`` (the number of training steps).

    If the layers disagree (a hand-edited state_dict), the largest value is returned with a warning.
    """
    values = {int(_to_numpy(state_dict[e.torch_key])) for e in TABLE
              if e.kind == "count" and e.torch_key in state_dict}
    if len(values) > 1:
        warnings.warn(f"num_batches_tracked differs between BatchNorm layers ({sorted(values)}); "
                      f"keeping {max(values)}", stacklevel=2)
    return max(values) if values else 0


# --------------------------------------------------------------------------- Flax -> torch


def _flat(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(tree, Mapping):
        out: dict[tuple[str, ...], Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, prefix + (str(k),)))
        return out
    return {prefix: tree}


def flax_to_torch(variables: Mapping[str, Any], num_batches_tracked: int = 0,
                  model_cfg: Mapping[str, Any] | None = None, *,
                  what: str = "Flax variables") -> collections.OrderedDict[str, Any]:
    """``{"params", "batch_stats"}`` -> a ``sar_torch_ref`` state_dict (OrderedDict of CPU tensors,
    in the reference model's key order); every BatchNorm's ``num_batches_tracked`` is set to
    ``num_batches_tracked`` (pass ``TrainState.step``)."""
    import torch

    if not isinstance(variables, Mapping):
        raise SarJaxError(f"{what}: expected a mapping with 'params' and 'batch_stats', "
                          f"got {type(variables).__name__}")
    flat: dict[tuple[str, ...], Any] = {}
    for coll, tree in variables.items():
        flat.update({(str(coll),) + p: v for p, v in _flat(tree).items()})
    expected = {(e.collection,) + e.path: e for e in TABLE if e.collection is not None}
    name = lambda p: "/".join(p)  # noqa: E731
    missing = [name(p) for p in expected if p not in flat]
    unexpected = [name(p) for p in flat if p not in expected]
    bad: list[str] = []
    dims = None
    if model_cfg is not None:
        dims = _dims_from_cfg(model_cfg)
    else:
        first = flat.get(("params", "encoder", "block0", "conv", "kernel"))
        last = flat.get(("params", "encoder", "final", "kernel"))
        if first is not None and last is not None and len(_shape(first)) == 4 and len(_shape(last)) == 4:
            dims = layer_channels(_shape(first)[2], _shape(first)[3], _shape(last)[3])
        elif first is not None and last is not None:
            bad.append("cannot infer the architecture: encoder/block0/conv/kernel and encoder/final/kernel "
                       "must be 4-D")
    for p, e in expected.items():
        if p in flat and dims is not None and _shape(flat[p]) != _flax_shape(e, dims):
            bad.append(f"{name(p)} has shape {_shape(flat[p])}, expected {_flax_shape(e, dims)}")
    _raise_problems(what, missing, unexpected, bad)
    count = int(num_batches_tracked)
    out: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for e in TABLE:
        if e.collection is None:
            out[e.torch_key] = torch.tensor(count, dtype=torch.long)
            continue
        arr = np.asarray(flat[(e.collection,) + e.path]).astype(np.float32, copy=False)
        perm = PERMUTATIONS[e.kind]
        if perm is not None:
            arr = arr.transpose(np.argsort(perm))
        out[e.torch_key] = torch.from_numpy(np.array(arr, dtype=np.float32, order="C", copy=True))
    return out


# --------------------------------------------------------------------------- checkpoints


def _plateau_from_torch(scheduler_sd: Any, lr: float, template: Any) -> Any:
    """The torch ReduceLROnPlateau state as an optax reduce_on_plateau state (same counters:
    torch reduces when num_bad_epochs > patience, optax, built with patience + 1, when its
    plateau_count reaches patience + 1, so the counts are the same number)."""
    import jax.numpy as jnp

    try:
        last_lr = float(scheduler_sd["_last_lr"][0])
        return template._replace(
            scale=jnp.asarray(last_lr / lr, template.scale.dtype),
            best_value=jnp.asarray(float(scheduler_sd["best"]), template.best_value.dtype),
            plateau_count=jnp.asarray(int(scheduler_sd["num_bad_epochs"]), jnp.int32),
            cooldown_count=jnp.asarray(int(scheduler_sd["cooldown_counter"]), jnp.int32))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        warnings.warn("the checkpoint's scheduler state is unreadable; the LR plateau starts fresh",
                      stacklevel=3)
        return template


def _log_val_loss(run_dir: Path, epoch: int) -> float | None:
    from sar_jax.core.rundir import read_log

    try:
        records = read_log(run_dir)
    except SarJaxError:
        return None
    for r in records:
        if r.get("epoch") == epoch and isinstance(r.get("val_loss"), (int, float)):
            return float(r["val_loss"])
    return None


def _torch_run_dir(ckpt: Path) -> Path | None:
    parent = ckpt.resolve().parent
    if parent.name == "checkpoints" and (parent.parent / "training.log").is_file():
        return parent.parent
    return None


def from_torch(ckpt_path: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """A ``sar_torch_ref`` checkpoint -> a ``sar_jax`` run directory; returns it."""
    import jax.numpy as jnp

    from sar_jax.core.config import config_from_dict
    from sar_jax.core.rundir import prepare_run_dir, read_log
    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.training import checkpointing
    from sar_jax.training.state import create_train_state
    from sar_torch_ref.training.checkpoint import load_checkpoint, versions

    ckpt_path, out = Path(ckpt_path), Path(out)
    if ckpt_path.is_dir():
        hint = " (a run directory? give its checkpoints/best.pt or checkpoints/last.pt)"
        raise SarJaxError(f"--from-torch {ckpt_path}: is a directory{hint}; expected a .pt checkpoint file")
    if out.exists() and not out.is_dir():
        raise SarJaxError(f"--out {out}: is a file; expected a run directory to create")
    ckpt = load_checkpoint(ckpt_path)
    config = config_from_dict(ckpt["config"], f"checkpoint {ckpt_path}")
    variables = torch_to_flax(ckpt["model"], config["model"], what=f"checkpoint {ckpt_path}")
    model = SARAutoencoder.from_config(config["model"])
    state = create_train_state(model, config, variables)
    try:
        epoch = int(ckpt["epoch"])
        best = float(ckpt["best_val_loss"])
        bad_epochs = int(ckpt["early_stopping"]["bad_epochs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SarJaxError(f"checkpoint {ckpt_path}: bad epoch / best_val_loss / early_stopping field "
                          f"({type(exc).__name__}: {exc})") from None
    if epoch < 0:
        raise SarJaxError(f"checkpoint {ckpt_path}: epoch {epoch} < 0")
    state = state.replace(
        step=jnp.asarray(num_batches_tracked(ckpt["model"]), jnp.int32),
        epoch=jnp.asarray(epoch, jnp.int32),
        best_val_loss=jnp.asarray(best, jnp.float32),
        epochs_without_improvement=jnp.asarray(bad_epochs, jnp.int32),
        plateau_state=_plateau_from_torch(ckpt["scheduler"], config["train"]["lr"], state.plateau_state))
    torch_run = _torch_run_dir(ckpt_path)
    val_loss: float | None = best if int(ckpt.get("best_epoch", -1)) == epoch else None
    if val_loss is None and torch_run is not None:
        val_loss = _log_val_loss(torch_run, epoch)
    if val_loss is None or not math.isfinite(val_loss):
        val_loss = best if math.isfinite(best) else 0.0
    out = prepare_run_dir(out, config, resume=False, overwrite=overwrite)
    if torch_run is not None and torch_run.resolve() != out.resolve():
        records = [r for r in read_log(torch_run) if r.get("epoch", 0) <= epoch]
        (out / "training.log").write_text("".join(json.dumps(r) + "\n" for r in records))
    metadata = {"config": config, "preprocessing_params": ckpt["preprocessing_params"], "epoch": epoch,
                "step": int(state.step), "val_loss": val_loss, "best_val_loss": best,
                "versions": checkpointing.library_versions(), "framework": "jax",
                "converted_from": {"path": str(ckpt_path), "framework": "torch",
                                   "versions": ckpt.get("versions", versions())}}
    manager = checkpointing.make_manager(out)
    # keyed by the global training step, as sar_jax.train keys its checkpoints
    checkpointing.save(manager, int(state.step), state, metadata, val_loss)
    manager.close()
    return out


def _best_epoch(run_dir: Path, epoch: int, which: str) -> int:
    from sar_jax.core.rundir import read_log

    try:
        records = [r for r in read_log(run_dir) if r.get("epoch", 0) <= epoch
                   and isinstance(r.get("val_loss"), (int, float))]
    except SarJaxError:
        records = []
    if records:
        return int(min(records, key=lambda r: r["val_loss"])["epoch"])
    return epoch if which == "best" else 0


def to_torch(run_dir: str | Path, out: str | Path, *, which: str = "best") -> Path:
    """The ``which`` (best / latest) checkpoint of a ``sar_jax`` run -> a ``sar_torch_ref``
    checkpoint file at ``out`` (the dict ``sar_torch_ref.training.checkpoint`` reads, Adam
    moments fresh, LR and plateau / early-stopping counters carried); returns ``out``."""
    import torch

    from sar_jax.inference.run import load_run
    from sar_torch_ref.models.autoencoder import SARAutoencoder as TorchAutoencoder
    from sar_torch_ref.training.checkpoint import save_checkpoint, versions

    run_dir, out = Path(run_dir), Path(out)
    if run_dir.is_file():
        raise SarJaxError(f"--to-torch {run_dir}: is a file; expected a sar_jax run directory "
                          "(holding config.json and checkpoints/)")
    if not run_dir.is_dir():
        raise SarJaxError(f"--to-torch {run_dir}: no such run directory")
    if out.is_dir():
        raise SarJaxError(f"--out {out}: is a directory; expected the .pt file to write")
    run = load_run(run_dir, which)
    config, state, meta = run.config, run.state, run.metadata
    state_dict = flax_to_torch(run.variables, int(state.step), config["model"], what=f"{run_dir} ({which})")
    torch_model = TorchAutoencoder(config["model"])
    torch_model.load_state_dict(state_dict, strict=True)  # cannot fail after the checks above
    train_cfg = config["train"]
    scale = float(state.plateau_state.scale)
    lr = train_cfg["lr"] * scale
    optimizer = torch.optim.Adam(torch_model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=train_cfg["lr_factor"], patience=train_cfg["lr_patience"])
    epoch = int(state.epoch)
    scheduler.best = float(state.plateau_state.best_value)
    scheduler.num_bad_epochs = int(state.plateau_state.plateau_count)
    scheduler.cooldown_counter = int(state.plateau_state.cooldown_count)
    scheduler.last_epoch = epoch
    scheduler._last_lr = [lr]
    best = float(state.best_val_loss)
    meta_best = meta.get("best_val_loss")
    if isinstance(meta_best, (int, float)) and np.float32(meta_best) == np.float32(best):
        best = float(meta_best)  # the float64 value the state's float32 copy was rounded from
    checkpoint = {"model": state_dict, "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "epoch": epoch, "best_val_loss": best,
                  "best_epoch": _best_epoch(run_dir, epoch, which),
                  "early_stopping": {"best": best, "bad_epochs": int(state.epochs_without_improvement)},
                  "config": config, "config_name": run_dir.resolve().name,
                  "preprocessing_params": meta.get("preprocessing_params"), "versions": versions()}
    save_checkpoint(out, checkpoint)
    return out


# --------------------------------------------------------------------------- CLI


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        prog="python -m sar_jax.convert",
        description="Convert checkpoints between sar_torch_ref (PyTorch) and sar_jax (JAX/Flax).")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-torch", metavar="CKPT.pt", help="sar_torch_ref checkpoint to convert to a run dir")
    src.add_argument("--to-torch", metavar="RUN_DIR", help="sar_jax run directory to convert to a .pt file")
    parser.add_argument("--out", required=True, help="run directory (--from-torch) or .pt file (--to-torch)")
    parser.add_argument("--which", choices=("best", "latest"), default="best",
                        help="--to-torch: which checkpoint of the run (default best)")
    parser.add_argument("--overwrite", action="store_true", help="--from-torch: replace a run already in --out")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = setup_args().parse_args(argv)
    if args.from_torch is not None:
        out = from_torch(args.from_torch, args.out, overwrite=args.overwrite)
        print(f"wrote sar_jax run directory {out}")
    else:
        out = to_torch(args.to_torch, args.out, which=args.which)
        print(f"wrote sar_torch_ref checkpoint {out}")
    return 0

