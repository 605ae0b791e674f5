"""The run-directory layout shared by ``sar_jax.train`` and ``sar_torch_ref.train``.

``<run>/config.json``, ``<run>/training.log`` (JSON lines, one per epoch),
``<run>/tb/`` (tensorboardX events), ``<run>/checkpoints/``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import write_json_atomic, write_text_atomic

LOG_KEYS = ("epoch", "train_loss", "train_mse", "train_ssim", "train_psnr", "val_loss", "val_mse",
            "val_ssim", "val_psnr", "lr", "epoch_seconds", "train_images_per_second")


def default_run_dir(config_name: str, root: str | Path = "runs") -> Path:
    """``runs/<config name>-<YYYYmmdd-HHMMSS>``."""
    return Path(root) / f"{config_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_run_dir(config_name: str, root: str | Path = "runs", holding: str = "config.json") -> Path:
    """The newest ``<root>/<config_name>-YYYYmmdd-HHMMSS`` (:func:`default_run_dir`'s names) that
    holds the file ``holding``; what ``--resume`` without a value continues in both trainers."""
    root = Path(root)
    pattern = re.compile(re.escape(config_name) + r"-\d{8}-\d{6}")
    runs = sorted(p for p in root.glob(f"{config_name}-*") if pattern.fullmatch(p.name) and (p / holding).is_file())
    if not runs:
        raise SarJaxError(f"no run of config '{config_name}' holding {holding} under {root}/")
    return runs[-1]


def prepare_run_dir(run_dir: str | Path, config: dict[str, Any], *, resume: bool,
                    overwrite: bool = False) -> Path:
    """Create (or, when resuming, reopen) a run directory and write ``config.json``.

    A directory already holding a different run is refused unless ``resume`` or ``overwrite``.
    """
    path = Path(run_dir)
    config_file = path / "config.json"
    if resume:
        if not config_file.is_file():
            raise SarJaxError(f"run_dir {path}: not a run directory (no config.json) to resume")
        return path
    if config_file.exists() and not overwrite:
        raise SarJaxError(f"run_dir {path}: already holds a run; pass resume=True to continue it or "
                          "overwrite=True to replace it")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if overwrite:  # replace the old run: its log, checkpoints and events must not survive
            if (path / "training.log").exists():
                (path / "training.log").unlink()
            for sub in ("checkpoints", "tb"):
                if (path / sub).is_dir():
                    shutil.rmtree(path / sub)
        (path / "checkpoints").mkdir(exist_ok=True)
        write_json_atomic(config_file, config)
    except OSError as exc:
        raise SarJaxError(f"run_dir {path}: cannot write the run directory ({exc.strerror})") from None
    return path


def _clean(value: Any) -> Any:
    if not isinstance(value, (str, int, float, type(None))) and hasattr(value, "item"):
        value = value.item()  # numpy / jax / torch scalars are not JSON-serialisable as such
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_log(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Append one epoch's record to ``training.log`` (JSON lines)."""
    missing = [k for k in LOG_KEYS if k not in record]
    if missing:
        raise ValueError(f"training.log record lacks {missing}")
    with open(Path(run_dir) / "training.log", "a") as fh:
        fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``training.log``."""
    path = Path(run_dir) / "training.log"
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) and not text.endswith("\n"):
                break  # the last record was cut short by a crash mid-write: drop it
            raise SarJaxError(f"{path}: line {n} is not valid JSON") from None
    return records


def truncate_log(run_dir: str | Path, last_epoch: int) -> None:
    """Drop records after ``last_epoch`` (epochs logged after the checkpoint being resumed)."""
    records = [r for r in read_log(run_dir) if r["epoch"] <= last_epoch]
    write_text_atomic(Path(run_dir) / "training.log", "".join(json.dumps(r) + "\n" for r in records))
