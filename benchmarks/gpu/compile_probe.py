"""Child process of :mod:`benchmarks.gpu.check`: compile the ``torch-compile-fp32`` contender at each
batch size, in the order the throughput part will, so the parent can hold it to a deadline (a
thread cannot be stopped; a process can) and, when it finishes in time, finds inductor's on-disk
caches warm. Prints ``compiled BATCH SECONDS`` per batch size, or ``failed BATCH REASON``.

    python -m benchmarks.gpu.compile_probe --device gpu --batch 64,256,8 --size 256 [--set k=v ...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu.compile_probe")
    p.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    p.add_argument("--batch", required=True, help="comma-separated batch sizes, in the parent's order")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--config", default="baseline")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    from benchmarks.contenders import Contender, Skip
    from sar_jax.core.config import load_config

    config = load_config(args.config, args.overrides)[0]
    c_in = config["model"]["in_channels"]
    for b in (int(v) for v in args.batch.split(",")):
        batch = np.random.default_rng(0).random((b, args.size, args.size, c_in), dtype=np.float32)
        t0 = time.perf_counter()
        try:
            Contender("torch", "compile", "fp32").build(config, batch, args.device)
        except Skip as exc:
            print(f"failed {b} {exc}", flush=True)
            return 1
        print(f"compiled {b} {time.perf_counter() - t0:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
