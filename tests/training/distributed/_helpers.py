"""Shared by the data-parallel and multi-host tests: fake CPU devices, free ports, the tiny CLI run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("_worker.py")
# configs/tiny.json with a global batch of 8 (divides over 1, 2 and 4 devices) and no per-epoch
# images or histograms (one compile less per process)
TINY = ["--config", "tiny", "--set", "train.batch_size=8", "--set", "logging.image_every=1000",
        "--set", "logging.histogram_every=1000"]


def env(devices: int) -> dict[str, str]:
    """The environment of a child process with ``devices`` fake CPU devices."""
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return e


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest relative difference (denominator floored at 1e-3)."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3)))


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_cli(args: list[str], devices: int, **kwargs) -> subprocess.CompletedProcess:
    """``python -m sar_jax.train`` in one process (checked unless ``check=False``)."""
    kwargs.setdefault("check", True)
    return subprocess.run([sys.executable, "-m", "sar_jax.train", *args], timeout=600, env=env(devices), **kwargs)


def start_processes(args: list[str], processes: int, devices: int, *, timeout: float = 60,
                    num_processes: list[int] | None = None, ids: list[int] | None = None,
                    script: list[str] | None = None) -> list[subprocess.Popen]:
    """Start ``processes`` processes of one multi-process run on a fresh loopback port (stderr piped)."""
    coordinator = f"127.0.0.1:{free_port()}"
    script = script or ["-m", "sar_jax.train"]
    ids = ids if ids is not None else list(range(processes))
    counts = num_processes or [processes] * len(ids)
    return [subprocess.Popen([sys.executable, *script, *args, "--coordinator", coordinator, "--num-processes",
                              str(n), "--process-id", str(i), "--timeout", str(timeout)],
                             env=env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, n in zip(ids, counts)]


def finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[tuple[int, str]]:
    """Wait for every process: ``(exit status, stderr)`` each."""
    errs = [p.communicate(timeout=timeout)[1] for p in procs]
    return [(p.returncode, e) for p, e in zip(procs, errs)]
