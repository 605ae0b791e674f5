"""torch.compile held to a deadline: :class:`CompileProbe` (in :mod:`benchmarks.gpu.check`) starts this
module as a child process that compiles the ``torch-compile-fp32`` contender at each batch size, in
the order the throughput part will, and kills it at the deadline (a thread cannot be stopped; a
process can). When it finishes in time, the parent's own compile finds inductor's on-disk caches
warm. The child prints ``compiled BATCH SECONDS`` per batch size, or ``failed BATCH REASON``.

    python -m benchmarks.gpu.compile_probe --device gpu --batch 64,256,8 --size 256 [--set k=v ...]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class CompileProbe:
    """torch.compile's first compilations in a child process, held to a deadline."""

    def __init__(self, args: argparse.Namespace) -> None:
        m = args.mode
        self.timeout = m["compile_timeout_s"]
        self.log = tempfile.NamedTemporaryFile(prefix="sar-compile-probe-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "benchmarks.gpu.compile_probe", "--device", args.device,
               "--batch", ",".join(map(str, m["batches"])), "--size", str(m["size"]),
               *[a for o in m["overrides"] for a in ("--set", o)]]
        self.t0 = time.perf_counter()
        # own session, so that the watchdog kills the whole group (inductor's compile workers too)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.timed_out, self.seconds = False, 0.0
        self.watchdog = threading.Thread(target=self._watch, daemon=True)
        self.watchdog.start()
        self.result: dict[str, Any] | None = None

    def _watch(self) -> None:
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.seconds = time.perf_counter() - self.t0

    def finish(self) -> dict[str, Any]:
        """Wait for the rest of the deadline; ``{compiled: {batch: seconds}, timed_out, ...}``."""
        if self.result is not None:
            return self.result
        self.watchdog.join()
        timed_out, seconds = self.timed_out, self.seconds
        self.log.close()
        text = Path(self.log.name).read_text(errors="replace")
        os.unlink(self.log.name)
        compiled = {int(b): float(s) for b, s in re.findall(r"^compiled (\d+) ([\d.]+)$", text, re.M)}
        failed = re.findall(r"^failed (\d+) (.*)$", text, re.M)
        self.result = {"deadline_s": self.timeout, "seconds": round(seconds, 1), "timed_out": timed_out,
                       "returncode": None if timed_out else self.proc.returncode, "compiled": compiled,
                       "failed": failed[0][1] if failed else None,
                       "log_tail": text[-2000:] if (timed_out or self.proc.returncode) else ""}
        state = "timed out" if timed_out else f"exit {self.proc.returncode}"
        print(f"torch.compile probe: {state} after {seconds:.1f} s (deadline {self.timeout:g} s); "
              f"compiled batch sizes {sorted(compiled) or 'none'}")
        return self.result

    def note(self, batch: int) -> str | None:
        """Why torch.compile is skipped at ``batch`` (None: it compiled in time)."""
        r = self.finish()
        if batch in r["compiled"]:
            return None
        if r["failed"]:
            return f"torch-compile-fp32 skipped at batch {batch}: {r['failed']}"
        return (f"torch-compile-fp32 skipped at batch {batch}: not compiled within {r['deadline_s']:g} s "
                f"(child process {'killed at the deadline' if r['timed_out'] else 'exited ' + str(r['returncode'])})")


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
