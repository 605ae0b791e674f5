"""The four parts of :mod:`benchmarks.gpu.check`: env, parity, throughput, e2e (each returns its record)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu.compile_probe import CompileProbe

#: The issue's GPU targets: (name, numerator label, denominator label, goal) per batch size.
RATIO_TARGETS = (("JAX fp32 / torch eager fp32", "jax-jit-fp32 / torch-eager-fp32", 1.3),
                 ("JAX fp32 / torch.compile fp32", "jax-jit-fp32 / torch-compile-fp32", 1.0),
                 ("JAX bf16 / JAX fp32", "jax-jit-bf16 / jax-jit-fp32", 1.8))
MFU_TARGET = 0.25  # of the bf16 peak, JAX bf16 train step at the largest batch
COMPILE_TARGET_S = 30.0


class Clock:
    """Seconds since the start and left in the budget."""

    def __init__(self, budget_s: float) -> None:
        self.t0 = time.perf_counter()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()


# ----------------------------------------------------------------------------------------- env

def loop_primitives(jaxpr: Any) -> int:
    """Number of ``scan``/``while`` equations in a (closed) jaxpr, nested ones included."""
    inner = getattr(jaxpr, "jaxpr", jaxpr)
    count = 0
    for eqn in inner.eqns:
        count += eqn.primitive.name in ("scan", "while")
        for value in eqn.params.values():
            for v in value if isinstance(value, (tuple, list)) else (value,):
                if hasattr(v, "eqns") or hasattr(getattr(v, "jaxpr", None), "eqns"):
                    count += loop_primitives(v)
    return count


def step_loops(config: dict[str, Any], batch: int, size: int) -> dict[str, int]:
    """Loop primitives in the jaxprs of ``train_step``, ``predict`` and ``eval_step`` at (batch,
    size): where they are 0, no convolution runs over batch chunks and no eval pass in
    micro-batches (the CPU-only paths of :mod:`sar_jax.ops.micro_batches` are off)."""
    import jax
    import jax.numpy as jnp

    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.training.state import compile_steps, create_train_state

    model = SARAutoencoder.from_config(config["model"])
    steps = compile_steps(model, config)  # fresh jit objects: no trace cached under another backend
    state = jax.eval_shape(lambda: create_train_state(model, config))  # shapes only: nothing runs
    x = jax.ShapeDtypeStruct((batch, size, size, config["model"]["in_channels"]), jnp.float32)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return {"train_step": loop_primitives(jax.make_jaxpr(steps["train_step"])(state, x)),
            "predict": loop_primitives(jax.make_jaxpr(steps["predict"])(variables, x)),
            "eval_step": loop_primitives(jax.make_jaxpr(steps["eval_step"])(state, x))}


def _dist_versions(prefixes: tuple[str, ...]) -> dict[str, str]:
    from importlib import metadata

    return {d.metadata["Name"]: d.version for d in metadata.distributions()
            if d.metadata["Name"] and d.metadata["Name"].lower().startswith(prefixes)}


def part_env(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    import jax
    import torch

    from benchmarks.throughput import device_info, versions

    dev = jax.devices()[0]
    out: dict[str, Any] = {
        "device": device_info(args.device), "versions": versions(),
        "cuda": {"torch_cuda": torch.version.cuda,
                 "torch_cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
                 "torch_device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                 "jax_compute_capability": getattr(dev, "compute_capability", None),
                 "jax_plugins": _dist_versions(("jax-cuda", "jax_cuda", "nvidia-cudnn", "nvidia-cuda-runtime"))},
        "jax_environment": jax.print_environment_info(return_string=True),
        "jax_device_count": jax.device_count()}
    # what `python -m sar_jax.train` imports on synthetic data: rasterio (35 MB) does not travel to the GPU
    import sar_jax.training.loop  # noqa: F401

    out["rasterio_imported_by_trainer"] = "rasterio" in sys.modules
    b, s = args.mode["batches"][0], args.mode["size"]
    loops = step_loops(config, b, s)
    off = not any(loops.values())
    out["cpu_only_paths"] = {
        "batch_size": b, "image_size": s, "loop_primitives": loops, "off": off,
        "pass": off if args.device == "gpu" else True,
        "note": ("must be off on a GPU: whole-batch convolutions and eval passes" if args.device == "gpu" else
                 "CPU: chunks and micro-batches are used only from about 128x128x64 activations per sample")}
    v, c = out["versions"], out["cuda"]
    print(f"device: {out['device']['name']} ({jax.default_backend()}, {jax.device_count()} device(s)); "
          f"torch sees {c['torch_device_name']}")
    print("versions: " + ", ".join(f"{k} {v[k]}" for k in ("python", "jax", "jaxlib", "flax", "optax", "torch")
                                    if k in v)
          + f"; CUDA (torch) {c['torch_cuda']}, cuDNN (torch) {c['torch_cudnn']}"
          + "".join(f", {k} {val}" for k, val in sorted(c["jax_plugins"].items())))
    print(f"CPU-only paths at batch {b}, {s}x{s}: loops {loops} -> {'off' if off else 'ON'}; rasterio imported "
          f"by the trainer's modules: {'YES' if out['rasterio_imported_by_trainer'] else 'no'}")
    return out


# -------------------------------------------------------------------------------------- parity

class Tf32:
    """torch's TF32 switches for matmuls and cuDNN convolutions, restored on exit."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> Tf32:
        import torch

        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.enabled
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def as_info(row: dict[str, Any], why: str) -> dict[str, Any]:
    """A parity row reported, not judged (``would_pass`` keeps its verdict)."""
    return {**row, "tolerance": f"info ({why}; {row['tolerance']})", "pass": True, "info": True,
            "would_pass": row["pass"]}


def part_parity(args: argparse.Namespace, out_dir: Path, stem: str) -> dict[str, Any]:
    import jax

    from sar_jax.parity.fixtures import torch_device
    from sar_jax.parity.forward import check_forward
    from sar_jax.parity.gradients import check_gradients
    from sar_jax.parity.lockstep import check_lockstep, lockstep, plot_lockstep
    from sar_jax.parity.losses import check_losses, check_ssim
    from sar_jax.parity.optimizer import check_optimizer
    from sar_jax.parity.rows import failures

    m = args.mode
    tdev = "cuda" if args.device == "gpu" else "cpu"
    timings: dict[str, float] = {}

    def timed(label: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        timings[label] = round(time.perf_counter() - t0, 1)
        print(f"  parity {label}: {timings[label]} s", flush=True)
        return value

    with jax.default_matmul_precision("highest"), Tf32(False), torch_device(tdev):
        rows = timed("1 forward", lambda: check_forward(**m["forward"]))
        rows += timed("2 SSIM", check_ssim)
        rows += timed("2 losses", check_losses)
        rows += timed("3 gradients", check_gradients)
        rows += timed("4 clip + Adam", lambda: check_optimizer(steps=m["optimizer_steps"]))
        lock = timed("6 lockstep", lambda: lockstep(m["lockstep_steps"], reference_floor=m["reference_floor"]))
        rows += check_lockstep(result=lock)
    plot_lockstep(lock, out_dir / f"{stem}-lockstep.png")
    with Tf32(True), torch_device(tdev):
        default_rows = [as_info(r, "default precision: TF32 on both sides where the GPU has it")
                        for r in timed("1 forward, default precision", lambda: check_forward(**m["forward"]))]
    failed = failures(rows)
    print(f"parity (TF32 off): {len(rows) - len(failed)}/{len(rows)} rows pass")
    for r in failed:
        print(f"  FAILED: {r['check']}: {r['quantity']}: observed {r['observed']:.3g}, tolerance {r['tolerance']}")
    for r in default_rows:
        if "max|diff|" in r["quantity"] and "float64" not in r["quantity"]:
            print(f"  default precision: {r['quantity']}: {r['observed']:.3g} "
                  f"({'within' if r['would_pass'] else 'OUTSIDE'} the fp32 tolerance)")
    return {"settings": {"torch_device": tdev, "jax_matmul_precision": "highest", "torch_allow_tf32": False,
                         "forward": m["forward"], "optimizer_steps": m["optimizer_steps"],
                         "lockstep_steps": m["lockstep_steps"]},
            "passed": not failed, "rows": rows, "default_precision_rows": default_rows, "timings": timings,
            "lockstep": {k: lock[k] for k in ("jax_loss", "torch_loss", "param_rel")}}


# ---------------------------------------------------------------------------------- throughput

def gpu_targets(rows: list[dict[str, Any]], ratios: dict[str, Any]) -> dict[str, Any]:
    """The issue's GPU targets per (batch, size): ratios, bf16 MFU at the largest batch, compile time."""
    out: dict[str, Any] = {}
    for key, modes in ratios.items():
        t: dict[str, Any] = {}
        for mode in ("train", "infer"):
            for name, pair, goal in RATIO_TARGETS:
                r = modes.get(mode, {}).get(pair)
                if r:
                    t[f"{mode}: {name}"] = {"value": round(r["ratio"], 3), "target": goal, "goal": f">= {goal}",
                                            "met": r["ratio"] >= goal}
        b, s = (int(v) for v in key.replace("batch", "").split("_size"))
        for prec in ("fp32", "bf16"):
            j = next((r for r in rows if (r["framework"], r["precision"], r["mode"], r["batch_size"],
                                          r["image_size"]) == ("jax", prec, "train", b, s)), None)
            if j and j["compile_seconds"] is not None:
                t[f"JAX {prec} train-step compile s"] = {"value": round(j["compile_seconds"], 2),
                                                        "target": COMPILE_TARGET_S, "goal": f"< {COMPILE_TARGET_S:g}",
                                                        "met": j["compile_seconds"] < COMPILE_TARGET_S}
        out[key] = t
    jb = [r for r in rows if (r["framework"], r["precision"], r["mode"]) == ("jax", "bf16", "train")]
    big = max(jb, key=lambda r: (r["batch_size"], r["image_size"])) if jb else None
    if big and big["mfu"] is not None:  # None: no known peak (a CPU, an unlisted GPU)
        out[f"batch{big['batch_size']}_size{big['image_size']}"]["train: JAX bf16 MFU (of the bf16 peak)"] = {
            "value": round(big["mfu"], 4), "target": MFU_TARGET, "goal": f">= {MFU_TARGET:.0%}",
            "met": big["mfu"] >= MFU_TARGET}
    return out


def part_throughput(args: argparse.Namespace, config_name: str, clock: Clock, probe: CompileProbe | None,
                    out_dir: Path, stem: str) -> tuple[dict[str, Any], str]:
    from benchmarks import throughput
    from sar_jax.core.config import load_config

    m = args.mode
    targs = throughput.parse_args(["--device", args.device, "--batch", ",".join(map(str, m["batches"])),
                                   "--size", str(m["size"]), "--repeats", str(m["repeats"]), "--config", config_name,
                                   "--no-pipeline", "--no-layer-profile",
                                   *[a for o in m["overrides"] for a in ("--set", o)]])
    targs.command = "python -m benchmarks.gpu.check " + " ".join(args.argv)
    config = load_config(config_name, m["overrides"])[0]
    notes: list[str] = [f"precision: JAX default matmul/conv precision; torch cudnn.allow_tf32="
                        f"{_torch_flag('cudnn')}, cuda.matmul.allow_tf32={_torch_flag('matmul')} (torch's defaults), "
                        f"cudnn.benchmark={_torch_flag('benchmark')}"]
    contenders = throughput.select_contenders(None, False, notes)
    last = {"t": None, "seconds": 0.0}

    def plan(b: int, s: int, chosen: list[Any]) -> list[Any]:
        now = time.perf_counter()
        if last["t"] is not None:
            last["seconds"] = now - last["t"]
        left = clock.left() - m["e2e_reserve_s"]
        if last["t"] is not None and left < 1.2 * last["seconds"]:  # compilation dominates: ~same each
            notes.append(f"batch {b}, size {s} skipped: {left:.0f} s left of the budget before the e2e part, "
                         f"the last batch size took {last['seconds']:.0f} s")
            print(f"  {notes[-1]}", flush=True)
            return []
        last["t"] = now
        keep = []
        for c in chosen:
            why = probe.note(b) if (c.label == "torch-compile-fp32" and probe) else None
            if c.label == "torch-compile-fp32" and not probe:
                why = "torch-compile-fp32 skipped: the compile probe did not run"
            if why:
                notes.append(why)
            else:
                keep.append(c)
        return keep

    result = throughput.measure(targs, config, contenders, notes, plan)
    if probe:
        result["torch_compile_probe"] = probe.finish()
    measured = sorted({r["batch_size"] for r in result["results"]})
    lp_batch = 64 if 64 in measured else (measured[0] if measured else None)
    if not m["layer_profile"]:
        notes.append("per-layer profile: not run in --tiny (benchmarks.throughput's own test covers it)")
    elif lp_batch is not None and clock.left() - m["e2e_reserve_s"] >= m["layer_profile_s"]:
        from benchmarks.layer_profile import profile_layers

        print(f"  per-layer profile (batch {lp_batch}, size {m['size']})", flush=True)
        result["layer_profile"] = {"batch_size": lp_batch, "image_size": m["size"],
                                   "rows": profile_layers(config, lp_batch, m["size"],
                                                          repeats=m["layer_profile_repeats"], device=args.device)}
    else:
        notes.append("per-layer profile skipped: not enough of the time budget left")
    result["targets"] = gpu_targets(result["results"], result["ratios"])
    result["targets_heading"] = ("GPU: JAX fp32 >= 1.3x torch eager and >= 1.0x torch.compile at batch 64, "
                                 "bf16 >= 1.8x fp32, >= 25% of the bf16 peak at batch 256, compile < 30 s")
    from benchmarks.report import write_markdown, write_plot

    with tempfile.TemporaryDirectory() as tmp:
        md = Path(tmp) / "t.md"
        write_markdown(result, md)
        text = md.read_text()
    write_plot(result, out_dir / f"{stem}-throughput.png")
    for r in result["results"]:
        mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
        print(f"  {r['framework']}-{r['variant']}-{r['precision']} {r['mode']} batch {r['batch_size']}: "
              f"{r['images_per_second']:.1f} images/s, {r['tflops']:.2f} TFLOP/s, MFU {mfu}")
    return result, text


def _torch_flag(which: str) -> bool:
    import torch

    return {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32,
            "benchmark": torch.backends.cudnn.benchmark}[which]


# ------------------------------------------------------------------------------------------ e2e

def part_e2e(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    m = args.mode
    with tempfile.TemporaryDirectory(prefix="sar-gpu-e2e-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "sar_jax.train", *m["e2e_args"], "--out", str(run_dir)]
        print("  " + " ".join(cmd[1:]), flush=True)
        # past the budget it still runs (parts are not cut), up to 90 s beyond it: the command must end
        # inside the device tool's 10 minutes
        timeout = max(clock.left(), m["e2e_reserve_s"]) + 90
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        wall = time.perf_counter() - t0
        print("\n".join("  | " + line for line in (proc.stdout + proc.stderr).strip().splitlines()[-15:]))
        if proc.returncode:
            raise RuntimeError(f"sar_jax.train exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        records = [json.loads(line) for line in (run_dir / "training.log").read_text().splitlines() if line]
        config = json.loads((run_dir / "config.json").read_text())
        steps = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    keys = ("epoch", "train_images_per_second", "train_data_wait_fraction", "epoch_seconds", "train_loss", "val_loss")
    epochs = [{k: r[k] for k in keys} for r in records]
    steady = epochs[1:] or epochs  # epoch 1 includes compilation
    out = {"command": "python -m sar_jax.train " + " ".join(m["e2e_args"]), "wall_seconds": round(wall, 1),
           "batch_size": config["train"]["batch_size"], "epochs": len(epochs), "steps": steps,
           "steps_per_epoch": steps // max(len(epochs), 1),
           "images_per_second": float(np.median([e["train_images_per_second"] for e in steady])),
           "data_wait_fraction": float(np.mean([e["train_data_wait_fraction"] for e in steady])),
           "steady_epochs": [e["epoch"] for e in steady], "per_epoch": epochs,
           "note": "images/s and data wait: median / mean over the epochs after the first (which compiles); "
                   "data wait = time blocked in the batch iterator / the epoch's training time"}
    print(f"e2e: {out['steps']} steps ({out['epochs']} epochs x {out['steps_per_epoch']}) at batch "
          f"{out['batch_size']}: {out['images_per_second']:.1f} images/s, "
          f"{out['data_wait_fraction']:.1%} of train time waiting for data, {wall:.0f} s in all")
    return out
