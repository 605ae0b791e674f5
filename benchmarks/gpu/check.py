"""One prepared command for a short GPU lease: environment, parity, throughput, an end-to-end run.

    bash benchmarks/gpu/run.sh OUT_DIR [WHEEL_DIR] [--tiny]     # installs missing wheels, then:
    python -m benchmarks.gpu.check --out OUT_DIR [--tiny] [--device gpu|cpu] [--budget-s S] [--parts ...]

Parts, in this order; each prints its elapsed time, and the results so far are saved after each
(a run cut short keeps what finished). A part that raises is recorded and the next one runs.

1. ``env``: versions (jax, jaxlib, flax, optax, torch, CUDA, cuDNN), the device, and whether the
   CPU-only paths (per-conv batch chunks, eval micro-batches) are off: no loop primitive in the
   jaxprs of the train step, predict and eval step at the throughput shapes.
2. ``parity``: the checks of :mod:`sar_jax.parity` (forward, SSIM, losses, gradients, clip + Adam,
   lockstep) with JAX on its backend and the reference on the same device, TF32 off on
   both sides; then :func:`sar_jax.parity.forward.check_forward` at default precision (TF32 where
   the GPU uses it), reported, not judged. Meanwhile a child process compiles torch.compile's
   contender (:mod:`benchmarks.gpu.compile_probe`) against a deadline.
3. ``throughput``: :func:`benchmarks.throughput.measure` (every contender alternated in one
   process) at batch 64, 256, 8 in that order while the budget allows (torch.compile only at the
   batch sizes the probe compiled in time), then the per-layer profile; the issue's GPU targets.
4. ``e2e``: ``python -m sar_jax.train --config baseline`` on synthetic data at batch 64 for a
   fixed number of steps (epochs x steps per epoch): images/s and the share of train time spent
   waiting for data (``train_data_wait_fraction`` of ``training.log``).

Writes ``<slug>.json``, ``<slug>.md``, ``<slug>-throughput.png`` and ``<slug>-lockstep.png`` in
OUT_DIR, ``<slug>`` naming the device (``gpu-nvidia-h200``; ``cpu-tiny`` for ``--tiny``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.gpu.compile_probe import CompileProbe
from benchmarks.gpu.parts import Clock, part_e2e, part_env, part_parity, part_throughput
from benchmarks.gpu.report import markdown

PARTS = ("env", "parity", "throughput", "e2e")

#: Full run (GPU) and --tiny (CPU, in make test): the same parts, smaller everywhere.
MODES: dict[str, dict[str, Any]] = {
    "full": {"batches": [64, 256, 8], "size": 256, "repeats": 5, "overrides": [],
             "forward": {"size": 256, "batch": 2, "base": 64, "latent": 16}, "optimizer_steps": 3,
             "lockstep_steps": 50, "reference_floor": True, "compile_timeout_s": 120.0, "budget_s": 450.0,
             "e2e_reserve_s": 100.0, "layer_profile": True, "layer_profile_s": 60.0, "layer_profile_repeats": 5,
             "e2e_args": ["--config", "baseline", "--set", "train.batch_size=64", "--set", "train.epochs=4",
                          "--set", "data.stride=64", "--set", "logging.progress=false"]},
    "tiny": {"batches": [2], "size": 64, "repeats": 2,
             "overrides": ["model.base_channels=4", "model.latent_channels=4"],
             "forward": {"size": 64, "batch": 2, "base": 8, "latent": 4}, "optimizer_steps": 1,
             "lockstep_steps": 3, "reference_floor": False, "compile_timeout_s": 2.0, "budget_s": 1200.0,
             "e2e_reserve_s": 30.0, "layer_profile": False, "layer_profile_s": 0.0, "layer_profile_repeats": 1,
             "e2e_args": ["--config", "tiny", "--set", "train.batch_size=2", "--set", "train.epochs=2",
                          "--set", "logging.image_every=100", "--set", "logging.histogram_every=100"]},
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu.check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for the results (at most 4 files)")
    p.add_argument("--tiny", action="store_true", help="small widths, 64x64, batch 2, 2 repeats, on CPU")
    p.add_argument("--device", choices=("gpu", "cpu"), default=None, help="default gpu (cpu with --tiny)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds for all parts (default 450; tiny 1200): throughput drops batch sizes to fit")
    p.add_argument("--compile-timeout-s", type=float, default=None,
                   help="deadline for torch.compile's first compilations (default 120; tiny 2)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = p.parse_args(argv)
    args.mode = dict(MODES["tiny" if args.tiny else "full"])
    args.device = args.device or ("cpu" if args.tiny else "gpu")
    for key in ("budget_s", "compile_timeout_s"):
        if getattr(args, key) is not None:
            args.mode[key] = getattr(args, key)
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"--parts: unknown {sorted(unknown)}; known: {','.join(PARTS)}")
    return args


def slug(device: str, device_name: str, tiny: bool) -> str:
    """File-name stem naming the device: ``gpu-nvidia-h200``, ``cpu-tiny``."""
    if device == "cpu":
        return "cpu-tiny" if tiny else "cpu"
    return "gpu-" + re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") + ("-tiny" if tiny else "")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    from benchmarks.throughput import _set_platform_env

    _set_platform_env(args.device)
    clock = Clock(args.mode["budget_s"])
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from sar_jax.core.config import load_config
    from sar_jax.core.files import write_text_atomic

    config_name = "baseline"
    config = load_config(config_name, args.mode["overrides"])[0]
    report: dict[str, Any] = {"command": "python -m benchmarks.gpu.check " + " ".join(argv), "device": args.device,
                              "tiny": args.tiny, "budget_s": args.mode["budget_s"], "mode": args.mode,
                              "parts": {}, "elapsed_s": 0.0}
    import jax
    import torch

    try:
        kind = getattr(jax.devices()[0], "device_kind", "")
    except Exception as exc:  # noqa: BLE001 - JAX_PLATFORMS=cuda without a GPU or its plugin: any of several
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"error: --device {args.device}: JAX cannot use it ({why}); on a CPU use --tiny", file=sys.stderr)
        return 2
    if args.tiny and args.device == "cpu":
        # tiny ops on a shared CPU: torch's thread team would wait on busy cores at every op
        torch.set_num_threads(1)
    if args.device == "gpu" and not torch.cuda.is_available():
        print("error: --device gpu: torch.cuda.is_available() is False (both frameworks need the GPU)",
              file=sys.stderr)
        return 2
    stem = slug(args.device, kind, args.tiny)
    throughput_md: list[str | None] = [None]

    def save() -> None:
        report["elapsed_s"] = clock.elapsed()
        write_text_atomic(out_dir / f"{stem}.json", json.dumps(report, indent=1, default=float) + "\n")
        write_text_atomic(out_dir / f"{stem}.md", markdown(report, throughput_md[0]))

    def cpu_seconds() -> float:  # this process and its finished children (probe, trainer)
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def run(part: str, fn: Callable[[], Any]) -> Any:
        t0, c0 = time.perf_counter(), cpu_seconds()
        print(f"[part] {part} ...", flush=True)
        entry: dict[str, Any] = {"status": "ok"}
        value = None
        try:
            value = fn()
        except Exception:  # noqa: BLE001 - one failing part must not cost the others on a short lease
            entry.update(status="error", error=traceback.format_exc())
            print(entry["error"], file=sys.stderr, flush=True)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        entry["cpu_seconds"] = round(cpu_seconds() - c0, 1)
        report["parts"][part] = entry
        print(f"[part] {part}: {entry['seconds']} s ({entry['status']}; {entry['cpu_seconds']} CPU s; "
              f"{clock.elapsed():.0f} s since start)", flush=True)
        return value

    if "env" in args.parts:
        report["env"] = run("env", lambda: part_env(args, config))
    save()
    probe = CompileProbe(args) if "throughput" in args.parts else None
    try:
        if "parity" in args.parts:
            report["parity"] = run("parity", lambda: part_parity(args, out_dir, stem))
            save()
        if "throughput" in args.parts:
            got = run("throughput", lambda: part_throughput(args, config_name, clock, probe, out_dir, stem))
            if got:
                report["throughput"], throughput_md[0] = got
            save()
    finally:
        if probe:
            probe.finish()
    if "e2e" in args.parts:
        report["e2e"] = run("e2e", lambda: part_e2e(args, clock))
    save()
    ok = all(p["status"] == "ok" for p in report["parts"].values())
    parity_ok = (report.get("parity") or {}).get("passed", True)
    paths = (report.get("env") or {}).get("cpu_only_paths", {})
    written = ", ".join(sorted(f.name for f in out_dir.iterdir() if f.name.startswith(stem)))
    print(f"wrote {written} in {out_dir} after {clock.elapsed():.0f} s; parts {'all ok' if ok else 'with ERRORS'}"
          + (f", parity {'passed' if parity_ok else 'FAILED'}" if report.get("parity") else "")
          + (f", CPU-only paths {'off' if paths['off'] else 'ON'}" if paths else ""))
    return 0 if ok and parity_ok and paths.get("pass", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
