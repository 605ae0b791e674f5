"""Train the PyTorch reference autoencoder.

Usage::

    python -m sar_torch_ref.train --config NAME_OR_PATH [--data PATH] [--out DIR]
                                  [--set section.key=value ...] [--overwrite]
                                  [--resume [CKPT_OR_RUN_DIR]]

``--resume`` takes a run directory (its ``checkpoints/last.pt``) or a ``.pt`` file; bare
``--resume`` continues ``--out`` if given, else the newest ``runs/<config>-<time>`` directory of
``--config``. A resumed run uses the checkpoint's config; ``--set`` may only change
``train.epochs``, ``data.prefetch`` and ``logging.*``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sar_jax.core.cli import add_train_args, flag_names, run_main
from sar_jax.core.config import load_config, resolve_config_path
from sar_jax.core.errors import SarJaxError
from sar_jax.core.rundir import default_run_dir, latest_run_dir

#: ``args.resume`` for a bare ``--resume`` (no value).
LATEST = True
RUNS_ROOT = Path("runs")
LAST_CHECKPOINT = "checkpoints/last.pt"


def setup_args() -> argparse.ArgumentParser:
    """The command-line parser: the shared training flags plus ``--resume``."""
    parser = argparse.ArgumentParser(prog="python -m sar_torch_ref.train",
                                     description="Train the PyTorch reference SAR autoencoder.")
    add_train_args(parser)
    parser.add_argument("--resume", nargs="?", const=LATEST, default=None, metavar="CKPT_OR_RUN_DIR",
                        help="continue from a checkpoint (.pt) or run directory; without a value, "
                             "--out or the newest runs/<config>-* directory")
    return parser


def resolve_resume(value: str | bool, config: str, out: str | None) -> tuple[Path, Path]:
    """``--resume`` value -> (checkpoint file, run directory to write)."""
    if value is LATEST:
        try:
            target = Path(out) if out else latest_run_dir(resolve_config_path(config).stem, RUNS_ROOT, LAST_CHECKPOINT)
        except SarJaxError as exc:
            raise SarJaxError(f"--resume: {exc}; give a run directory or checkpoint") from None
    else:
        target = Path(value)
    if target.is_dir():
        ckpt, own_run = target / LAST_CHECKPOINT, target
        if not ckpt.is_file():
            raise SarJaxError(f"--resume {target}: no checkpoints/last.pt in this directory")
    elif target.is_file():
        ckpt = target
        parent = target.parent.parent
        own_run = parent if target.parent.name == "checkpoints" and (parent / "config.json").is_file() else None
    else:
        raise SarJaxError(f"--resume {target}: no such checkpoint or run directory")
    if out is not None:
        return ckpt, Path(out)
    if own_run is None:
        raise SarJaxError(f"--resume {target}: checkpoint is not inside a run directory; "
                          "give --out DIR for the continued run")
    return ckpt, own_run


@flag_names(run_dir="--out", overrides="--set", resume="--resume", overwrite="--overwrite")
def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train, return 0. Raises SarJaxError on bad input."""
    from sar_jax.core.config import resume_config
    from sar_torch_ref.training.checkpoint import load_checkpoint
    from sar_torch_ref.training.trainer import train_and_evaluate

    args = setup_args().parse_args(argv)
    if args.resume is None:
        config, name = load_config(args.config, args.overrides, args.data)
        run_dir = Path(args.out) if args.out else default_run_dir(name)
        train_and_evaluate(config, name, run_dir, overwrite=args.overwrite)
        return 0
    if args.data is not None:
        raise SarJaxError("--data cannot be combined with --resume (the checkpoint's data config is used)")
    ckpt_path, run_dir = resolve_resume(args.resume, args.config, args.out)
    checkpoint = load_checkpoint(ckpt_path)
    config = resume_config(checkpoint["config"], args.overrides, f"checkpoint {ckpt_path}")
    name = checkpoint.get("config_name") or run_dir.name
    train_and_evaluate(config, name, run_dir, resume_from=ckpt_path, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
