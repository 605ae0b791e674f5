"""Where the JAX train step / inference spends its time, op by op (XLA:CPU profiler trace).

    python -m benchmarks.xla_op_profile [--mode train|infer] [--batch 8] [--size 256] [--steps 5]

Runs the real compiled step under ``jax.profiler`` with XLA's per-thunk trace events on, maps
each event to the optimized HLO (op and shape) and sums per step by category: convolution
forward, convolution input gradient, convolution kernel gradient, layout copies, other
(BatchNorm, activations, loss, optimizer). XLA runs independent ops concurrently (e.g. a
layer's input and kernel gradients), so the op times can sum to more than the step's wall time.
Also prints the minor page faults and kernel time per step (fresh temp memory every step).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any


def _categorize(name: str, shape: str, op: str) -> str:
    # kernel gradients first: their (I, 5, 5, O) output, also when they run inside a loop body
    if name.startswith("ynn_fusion") and (re.match(r"(f32|bf16)\[\d+,5,5,\d+\]", shape) or not op):
        return "conv kernel-grad"
    if name.startswith("ynn_fusion") and "conv" in op:
        backward = "transpose(jvp" in op
        return "conv input-grad" if backward else "conv forward"
    if "transpose" in name or "copy" in name:
        return "layout copies (transpose/copy)"
    return "other (BN, activations, loss, optimizer)"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.xla_op_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("train", "infer"), default="train")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--config", default="baseline")
    p.add_argument("--top", type=int, default=20, help="also list the N most expensive ops")
    args = p.parse_args(argv)
    if "jax" in sys.modules:
        raise SystemExit("run as its own process: XLA flags must be set before jax is imported")
    dump = tempfile.mkdtemp(prefix="xla-dump-")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_enable_xprof_traceme=true --xla_dump_to={dump}").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sar_jax.core.config import load_config
    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.training.state import compile_steps, create_train_state

    cfg = load_config(args.config)[0]
    model = SARAutoencoder.from_config(cfg["model"])
    steps = compile_steps(model, cfg)
    state = create_train_state(model, cfg)
    x = jnp.asarray(np.random.default_rng(0).random((args.batch, args.size, args.size, 1), dtype=np.float32))
    box: list[Any] = [state]
    if args.mode == "train":
        def run() -> None:
            box[0], m = steps["train_step"](box[0], x)
            jax.block_until_ready(m)
        module = "train_step"
    else:
        variables = {"params": state.params, "batch_stats": state.batch_stats}

        def run() -> None:
            jax.block_until_ready(steps["predict"](variables, x))
        module = "predict"
    for _ in range(2):
        run()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        run()
    wall = (time.perf_counter() - t0) / args.steps
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    trace_dir = tempfile.mkdtemp(prefix="xla-trace-")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(args.steps):
            run()
    events = json.load(gzip.open(glob.glob(f"{trace_dir}/**/*perfetto_trace.json.gz", recursive=True)[0]))
    events = events["traceEvents"] if isinstance(events, dict) else events
    dur: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            dur[e["name"]] += e["dur"]
    hlo = open(glob.glob(f"{dump}/*jit_{module}.cpu_after_optimizations.txt")[0]).read()
    meta = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+) (fusion|convolution|dot|copy|transpose|custom-call)\(", line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            meta[m.group(1)] = (m.group(2), op.group(1) if op else "")
    cats: collections.Counter = collections.Counter()
    rows = []
    for name, t in dur.items():
        if name in meta:
            ms = t / args.steps / 1e3
            shape, op = meta[name]
            cats[_categorize(name, shape, op)] += ms
            rows.append((ms, name, shape, op.split("/", 1)[-1]))
    print(f"{module}: batch {args.batch}, size {args.size}; wall {wall * 1e3:.0f} ms/step; "
          f"{(r1.ru_minflt - r0.ru_minflt) / args.steps:.0f} minor page faults/step, "
          f"kernel CPU {(r1.ru_stime - r0.ru_stime) / args.steps * 1e3:.0f} ms/step")
    total = sum(cats.values())
    print(f"op time per step (ms; concurrent ops overlap): total {total:.0f}")
    for cat, ms in cats.most_common():
        print(f"  {cat:42s} {ms:7.1f}  ({ms / total:5.1%})")
    print(f"top {args.top} ops:")
    for ms, name, shape, op in sorted(rows, reverse=True)[:args.top]:
        print(f"  {ms:7.1f} ms  {name:28s} {shape:28s} {op[-70:]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
