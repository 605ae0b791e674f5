"""Convert whole checkpoints between ``sar_torch_ref`` (a ``.pt`` file) and ``sar_jax`` (a run
directory), and the ``python -m sar_jax.convert`` command line.

Usage::

    python -m sar_jax.convert --from-torch CKPT.pt --out RUN_DIR [--overwrite]
    python -m sar_jax.convert --to-torch RUN_DIR --out MODEL.pt [--which best|latest]

The weights go through the fixed table of the checkpoint's ``model.kind`` (bit-exact both ways):
:mod:`sar_jax.parity.convert` (``baseline``), :mod:`sar_jax.parity.convert_codec` (``factorized``,
``hyperprior``) or :mod:`sar_jax.parity.convert_unet` (``unet``).

A converted run directory holds ``config.json``, an Orbax checkpoint (the torch checkpoint's
epoch; keyed by its step) with fresh Adam moments, and the torch run's LR-plateau and
early-stopping counters, so ``sar_jax.train --resume`` continues it; the torch run's
``training.log`` is copied when the checkpoint lies in a run directory. The step is the baseline's
BatchNorm ``num_batches_tracked``; the other kinds have no BatchNorm, so their ``.pt`` files carry
it as ``step`` (else it is read from the Adam state, else 0).
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.cli import add_examples, add_version_arg, flag_names
from sar_jax.core.config import CODEC_KINDS
from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import write_text_atomic
from sar_jax.parity import convert, convert_codec, convert_unet


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


def _weights_from_torch(state_dict: Any, model_cfg: dict[str, Any], what: str) -> dict[str, Any]:
    """``{"params", "batch_stats"}`` of a reference state_dict, through the table of ``model.kind``."""
    kind = model_cfg["kind"]
    if kind in CODEC_KINDS:
        return {"params": convert_codec.torch_to_flax(state_dict, kind, model_cfg, what=what)["params"],
                "batch_stats": {}}
    if kind == "unet":
        return convert_unet.torch_to_flax(state_dict, model_cfg, what=what)
    return convert.torch_to_flax(state_dict, model_cfg, what=what)


def _weights_to_torch(variables: Any, step: int, model_cfg: dict[str, Any], what: str) -> Any:
    """A reference state_dict of Flax variables, through the table of ``model.kind``."""
    kind = model_cfg["kind"]
    if kind in CODEC_KINDS:
        return convert_codec.flax_to_torch(variables, kind, model_cfg, what=what)
    if kind == "unet":
        return convert_unet.flax_to_torch(variables, model_cfg, what=what)
    return convert.flax_to_torch(variables, step, model_cfg, what=what)


def _torch_model(model_cfg: dict[str, Any]) -> Any:
    """The reference module of ``model.kind``."""
    from sar_torch_ref.models import FactorizedPrior, SARAutoencoder, ScaleHyperprior
    from sar_torch_ref.models.unet import UNet

    return {"baseline": SARAutoencoder, "factorized": FactorizedPrior, "hyperprior": ScaleHyperprior,
            "unet": UNet}[model_cfg["kind"]](model_cfg)


def _torch_step(ckpt: dict[str, Any], kind: str, what: str) -> int:
    """The training step of a reference checkpoint: the baseline's ``num_batches_tracked``; for the other
    kinds the checkpoint's ``step``, else the largest Adam ``step``, else 0."""
    if kind == "baseline":
        return convert.num_batches_tracked(ckpt["model"])
    try:
        if "step" in ckpt:
            return int(ckpt["step"])
        return int(max((float(s["step"]) for s in ckpt["optimizer"]["state"].values() if "step" in s), default=0))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SarJaxError(f"{what}: bad step / optimizer state field ({type(exc).__name__}: {exc})") from None


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
    from sar_jax.nn.registry import build_model
    from sar_jax.training import checkpointing
    from sar_jax.training.state import create_train_state
    from sar_torch_ref.training.checkpoint import load_checkpoint, versions

    ckpt_path, out = Path(ckpt_path), Path(out)
    if ckpt_path.is_dir():
        hint = " (a run directory? give its checkpoints/best.pt or checkpoints/last.pt)"
        raise SarJaxError(f"ckpt_path {ckpt_path}: is a directory{hint}; expected a .pt checkpoint file")
    if out.exists() and not out.is_dir():
        raise SarJaxError(f"out {out}: is a file; expected a run directory to create")
    ckpt = load_checkpoint(ckpt_path)
    config = config_from_dict(ckpt["config"], f"checkpoint {ckpt_path}")
    what = f"checkpoint {ckpt_path}"
    variables = _weights_from_torch(ckpt["model"], config["model"], what)
    step = _torch_step(ckpt, config["model"]["kind"], what)
    state = create_train_state(build_model(config["model"]), config, variables)
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
        step=jnp.asarray(step, jnp.int32),
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
        write_text_atomic(out / "training.log", "".join(json.dumps(r) + "\n" for r in records))
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
    from sar_torch_ref.training.checkpoint import save_checkpoint, versions

    run_dir, out = Path(run_dir), Path(out)
    if run_dir.is_file():
        raise SarJaxError(f"run_dir {run_dir}: is a file; expected a sar_jax run directory "
                          "(holding config.json and checkpoints/)")
    if not run_dir.is_dir():
        raise SarJaxError(f"run_dir {run_dir}: no such run directory")
    if out.is_dir():
        raise SarJaxError(f"out {out}: is a directory; expected the .pt file to write")
    run = load_run(run_dir, which)
    config, state, meta = run.config, run.state, run.metadata
    state_dict = _weights_to_torch(run.variables, int(state.step), config["model"], f"{run_dir} ({which})")
    torch_model = _torch_model(config["model"])
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
    if config["model"]["kind"] != "baseline":  # no num_batches_tracked to carry it
        checkpoint["step"] = int(state.step)
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
    add_version_arg(parser)
    add_examples(parser, "python -m sar_jax.convert --from-torch runs/x/checkpoints/best.pt --out runs/x-jax")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = setup_args().parse_args(argv)
    if args.from_torch is not None:
        with flag_names(ckpt_path="--from-torch", out="--out", run_dir="--out", overwrite="--overwrite"):
            out = from_torch(args.from_torch, args.out, overwrite=args.overwrite)
        print(f"wrote sar_jax run directory {out}")
    else:
        with flag_names(run_dir="--to-torch", out="--out"):
            out = to_torch(args.to_torch, args.out, which=args.which)
        print(f"wrote sar_torch_ref checkpoint {out}")
    return 0

