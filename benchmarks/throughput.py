"""Train-step and inference throughput, JAX vs PyTorch, measured side by side in one process.

    python -m benchmarks.throughput [--device cpu|gpu] [--quick] [--batch 8,32] [--size 256,512]
                                    [--repeats N] [--out FILE.json] [--config NAME] [--set k=v ...]

For every (batch, size) all contenders (:mod:`benchmarks.contenders`) are built and warmed up
(compilation and first calls excluded from the timings, compile time reported apart), then
timed in alternation: each repeat runs every contender's train step, then every contender's
inference, starting from a rotating contender, so slow drifts of the machine's load hit all
of them alike. Reported: images/s of the median repeat, achieved TFLOP/s from the analytic
FLOPs (:mod:`benchmarks.flops`), MFU on known GPUs, peak memory, the data pipeline's
throughput (:mod:`benchmarks.data_pipeline`), the per-layer profile (:mod:`benchmarks.layer_profile`)
and the JAX/PyTorch ratios. Writes FILE.json, FILE.md and FILE.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = "benchmarks/results/throughput.json"
QUICK_SKIP = {"torch-compile-fp32": "skipped in --quick: torch.compile's first call (inductor C++ build) "
                                    "takes up to ~50 s on 2 CPU cores with a cold cache; run without --quick "
                                    "to include it (see cpu-2core-full)"}
PIPELINE_MARGIN = 5.0  # the pipeline must deliver this many times what the fastest train step consumes
TARGETS = {"train": (1.0, 1.5), "infer": (1.0, 1.5)}  # (target, stretch) for jax-jit-fp32 / torch-eager-fp32
COMPILE_TARGET_S = 30.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--quick", action="store_true",
                   help="batch 8, size 256, 5 repeats, no torch.compile (< 5 min on 2 CPU cores)")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes (default 8,32; quick 8)")
    p.add_argument("--size", default=None, help="comma-separated image sizes (default 256; quick 256)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (default 7; quick 5)")
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON path; .md and .png are written next to it")
    p.add_argument("--config", default="baseline", help="config name or path (model, loss, optimizer)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. model.base_channels=4)")
    p.add_argument("--contenders", default=None,
                   help="comma-separated labels to run (default all), e.g. jax-jit-fp32,torch-eager-fp32")
    p.add_argument("--no-layer-profile", action="store_true", help="skip the per-layer profile")
    p.add_argument("--no-pipeline", action="store_true", help="skip the data-pipeline benchmark")
    args = p.parse_args(argv)
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    args.batch = ints(args.batch) if args.batch else ([8] if args.quick else [8, 32])
    args.size = ints(args.size) if args.size else [256]
    args.repeats = args.repeats or (5 if args.quick else 7)
    return args


def _set_platform_env(device: str) -> None:
    """Must run before jax is imported."""
    if device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    else:
        os.environ.setdefault("JAX_PLATFORMS", "cuda")
        # JAX would otherwise grab 75 % of the GPU and starve the PyTorch contenders
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


class RssSampler:
    """Peak resident set size of this process while active (sampled every ``interval`` s)."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0

    def __enter__(self) -> RssSampler:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def device_info(device: str) -> dict[str, Any]:
    import jax

    dev = jax.devices()[0]
    info: dict[str, Any] = {"kind": device, "jax_device": str(dev), "name": getattr(dev, "device_kind", str(dev)),
                            "platform": platform.platform(), "processor": platform.processor()}
    if device == "cpu":
        info["cpu_count"] = os.cpu_count()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    info["name"] = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return info


def versions() -> dict[str, str]:
    import flax
    import jax
    import jaxlib
    import optax
    import torch

    out = {"python": sys.version.split()[0], "jax": jax.__version__, "jaxlib": jaxlib.__version__,
           "flax": flax.__version__, "optax": optax.__version__, "torch": torch.__version__,
           "numpy": np.__version__}
    try:
        import dm_pix
        import pytorch_msssim

        out["dm_pix"] = getattr(dm_pix, "__version__", "?")
        out["pytorch_msssim"] = getattr(pytorch_msssim, "__version__", "?")
    except ImportError:
        pass
    return out


def _inner_steps(fn: Any, min_seconds: float = 0.2, cap: int = 50) -> int:
    """Calls per timed sample so that a sample lasts >= min_seconds (1 for real-sized steps)."""
    t0 = time.perf_counter()
    fn()
    dt = max(time.perf_counter() - t0, 1e-6)
    return int(min(cap, max(1, np.ceil(min_seconds / dt))))


def measure_config(contenders: list[Any], config: dict[str, Any], batch_size: int, image_size: int,
                   repeats: int, device: str, notes: list[str]) -> list[dict[str, Any]]:
    """Build, warm up and time every contender at one (batch, size); result rows."""
    from benchmarks.contenders import Skip
    from benchmarks.flops import forward_flops, peak_tflops, train_flops

    c_in = config["model"]["in_channels"]
    batch = np.random.default_rng(0).random((batch_size, image_size, image_size, c_in), dtype=np.float32)
    prepared = {}
    for c in contenders:
        try:
            prepared[c] = c.build(config, batch, device)
        except Skip as exc:
            notes.append(f"{c.label} at batch {batch_size}, size {image_size}: {exc}")
            print(f"  skip {c.label}: {exc}", flush=True)
            continue
        print(f"  built {c.label}: compile {prepared[c].compile_seconds}", flush=True)
    for p in prepared.values():  # warm-up beyond the first call
        p.train()
        p.infer()
    inner = {(c, m): _inner_steps(getattr(p, m)) for c, p in prepared.items() for m in ("train", "infer")}
    times: dict[tuple[Any, str], list[float]] = {k: [] for k in inner}
    order = list(prepared)
    for r in range(repeats):
        rot = order[r % len(order):] + order[:r % len(order)]
        for mode in ("train", "infer"):
            for c in rot:
                fn, n = getattr(prepared[c], mode), inner[(c, mode)]
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times[(c, mode)].append((time.perf_counter() - t0) / n)
        print(f"  repeat {r + 1}/{repeats} done", flush=True)

    memory: dict[tuple[Any, str], dict[str, Any]] = {}
    for c, p in prepared.items():  # a separate, untimed pass so sampling cannot perturb the timings
        for mode in ("train", "infer"):
            if p.reset_peak_memory:
                p.reset_peak_memory()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            with RssSampler() as rss:
                before = rss.peak
                getattr(p, mode)()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            memory[(c, mode)] = {"host_peak_rss_mb": rss.peak / 2**20,
                                 "host_step_increase_mb": (rss.peak - before) / 2**20,
                                 "minor_page_faults": r1.ru_minflt - r0.ru_minflt,
                                 "system_cpu_seconds": r1.ru_stime - r0.ru_stime,
                                 **(p.device_peak_memory_mb() if p.device_peak_memory_mb else {})}

    dev_name = device_info(device)["name"]
    rows = []
    for c, p in prepared.items():
        for mode in ("train", "infer"):
            t = np.asarray(times[(c, mode)])
            ips = batch_size / float(np.median(t))
            flops = (train_flops if mode == "train" else forward_flops)(config["model"], image_size)
            tflops = ips * flops / 1e12
            peak = peak_tflops(dev_name, c.precision) if device == "gpu" else None
            mem = memory[(c, mode)]
            rows.append({
                "framework": c.framework, "variant": c.variant, "precision": c.precision, "mode": mode,
                "batch_size": batch_size, "image_size": image_size, "images_per_second": ips,
                "compile_seconds": p.compile_seconds[mode], "first_call_seconds": p.first_call_seconds.get(mode),
                "tflops": tflops, "mfu": (tflops / peak) if peak else None,
                "peak_memory_mb": mem.get("device_peak_mb") or mem["host_peak_rss_mb"], **mem,
                "step_seconds": {"median": float(np.median(t)), "min": float(t.min()), "max": float(t.max()),
                                 "all": [float(v) for v in t]},
                "steps_per_sample": inner[(c, mode)]})
    return rows


def _find(rows: list[dict], label: str, mode: str, b: int, s: int) -> dict | None:
    fw, variant, prec = label.split("-", 2) if label.count("-") >= 2 else (label, "", "")
    for r in rows:
        if (r["framework"], r["variant"], r["precision"], r["mode"], r["batch_size"], r["image_size"]) == \
                (fw, variant, prec, mode, b, s):
            return r
    return None


def compute_ratios(rows: list[dict]) -> dict[str, Any]:
    """Per (batch, size) and mode: JAX images/s over PyTorch images/s (> 1: JAX faster), from the
    medians, plus the median of the per-repeat paired ratios (robust to load drifts)."""
    out: dict[str, Any] = {}
    configs = sorted({(r["batch_size"], r["image_size"]) for r in rows})
    pairs = [("jax-jit-fp32", "torch-eager-fp32"), ("jax-jit-fp32", "torch-channels_last-fp32"),
             ("jax-jit-fp32", "torch-compile-fp32"), ("jax-jit-bf16", "torch-eager-bf16"),
             ("jax-jit-bf16", "torch-channels_last-bf16"), ("jax-jit-bf16", "jax-jit-fp32"),
             ("torch-eager-bf16", "torch-eager-fp32")]
    for b, s in configs:
        key = f"batch{b}_size{s}"
        out[key] = {}
        for mode in ("train", "infer"):
            out[key][mode] = {}
            for a, c in pairs:
                ra, rc = _find(rows, a, mode, b, s), _find(rows, c, mode, b, s)
                if ra is None or rc is None:
                    continue
                ta, tc = np.asarray(ra["step_seconds"]["all"]), np.asarray(rc["step_seconds"]["all"])
                out[key][mode][f"{a} / {c}"] = {
                    "ratio": ra["images_per_second"] / rc["images_per_second"],
                    "paired_median": float(np.median(tc / ta)) if len(ta) == len(tc) else None}
            fp32_torch = [r for r in rows if r["framework"] == "torch" and r["precision"] == "fp32"
                          and r["mode"] == mode and (r["batch_size"], r["image_size"]) == (b, s)]
            ja = _find(rows, "jax-jit-fp32", mode, b, s)
            if ja and fp32_torch:
                best = max(fp32_torch, key=lambda r: r["images_per_second"])
                out[key][mode]["jax-jit-fp32 / best torch fp32"] = {
                    "ratio": ja["images_per_second"] / best["images_per_second"],
                    "best_torch": f"torch-{best['variant']}-fp32"}
    return out


def compute_targets(rows: list[dict], ratios: dict[str, Any]) -> dict[str, Any]:
    """The speed targets of the issue, per (batch, size): met or not."""
    out = {}
    for key, modes in ratios.items():
        t = {}
        for mode, (target, stretch) in TARGETS.items():
            r = modes.get(mode, {}).get("jax-jit-fp32 / torch-eager-fp32")
            if r:
                t[f"{mode}: jax-jit-fp32 / torch-eager-fp32"] = {
                    "value": round(r["ratio"], 3), "paired_median": r["paired_median"] and round(r["paired_median"], 3),
                    "target": target, "met": r["ratio"] >= target, "stretch": stretch,
                    "stretch_met": r["ratio"] >= stretch}
        b, s = (int(v) for v in key.replace("batch", "").split("_size"))
        ja = _find(rows, "jax-jit-fp32", "train", b, s)
        if ja and ja["compile_seconds"] is not None:
            t["jax train-step compile seconds"] = {"value": round(ja["compile_seconds"], 2),
                                                   "target": COMPILE_TARGET_S,
                                                   "met": ja["compile_seconds"] < COMPILE_TARGET_S}
        out[key] = t
    return out


def pipeline_section(config: dict[str, Any], rows: list[dict], batches: list[int], sizes: list[int],
                     quick: bool) -> dict[str, Any]:
    from benchmarks.data_pipeline import pipeline_throughput

    out: dict[str, Any] = {"margin_required": PIPELINE_MARGIN, "configs": {}}
    for b in batches:
        for s in sizes:
            res = pipeline_throughput(config, b, s, min_seconds=0.5 if quick else 1.0)
            train = [r["images_per_second"] for r in rows
                     if r["mode"] == "train" and (r["batch_size"], r["image_size"]) == (b, s)]
            consumed = max(train) if train else None
            entry: dict[str, Any] = {"sources": res, "fastest_train_images_per_second": consumed}
            if consumed:
                slowest = min(v["images_per_second"] for v in res.values())
                entry["margin"] = slowest / consumed
                entry["bottleneck"] = slowest < PIPELINE_MARGIN * consumed
                entry["verdict"] = (f"data pipeline IS the bottleneck: it delivers {slowest:.0f} images/s, less than "
                                    f"{PIPELINE_MARGIN:g}x the {consumed:.1f} images/s the fastest train step consumes"
                                    if entry["bottleneck"] else
                                    f"not a bottleneck: slowest source delivers {slowest:.0f} images/s = "
                                    f"{slowest / consumed:.0f}x the fastest train step ({consumed:.1f} images/s)")
            out["configs"][f"batch{b}_size{s}"] = entry
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _set_platform_env(args.device)
    from benchmarks.contenders import ALL_CONTENDERS
    from benchmarks.flops import conv_layers, forward_flops, train_flops
    from benchmarks.report import write_markdown, write_plot
    from sar_jax.core.config import load_config

    config = load_config(args.config, args.overrides)[0]
    notes: list[str] = []
    contenders = list(ALL_CONTENDERS)
    if args.contenders:
        wanted = set(args.contenders.split(","))
        unknown = wanted - {c.label for c in contenders}
        if unknown:
            raise SystemExit(f"unknown contender(s) {sorted(unknown)}; known: {[c.label for c in contenders]}")
        contenders = [c for c in contenders if c.label in wanted]
    if args.quick:
        for label, why in QUICK_SKIP.items():
            if any(c.label == label for c in contenders):
                notes.append(f"{label}: {why}")
        contenders = [c for c in contenders if c.label not in QUICK_SKIP]
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    rows: list[dict] = []
    for s in args.size:
        for b in args.batch:
            print(f"batch {b}, size {s}", flush=True)
            rows += measure_config(contenders, config, b, s, args.repeats, args.device, notes)
    ratios = compute_ratios(rows)
    result: dict[str, Any] = {
        "device": device_info(args.device), "versions": versions(),
        "conditions": {"load_average_1_5_15min_before": load_before, "load_average_1_5_15min_after": os.getloadavg(),
                       "note": "the machine may be shared: a load average above the core count means other "
                               "processes competed for the cores during the timings"},
        "settings": {"quick": args.quick, "batch_sizes": args.batch, "image_sizes": args.size,
                     "repeats": args.repeats, "config": args.config, "overrides": args.overrides,
                     "model": config["model"], "loss": config["loss"],
                     "optimizer": {"lr": config["train"]["lr"], "max_grad_norm": config["train"]["max_grad_norm"]},
                     "contenders": [c.label for c in contenders],
                     "command": "python -m benchmarks.throughput " + " ".join(sys.argv[1:] if argv is None else argv)},
        "flops": {"convention": "2 FLOPs per MAC, convolutions only; train = 3 x forward",
                  "per_image": {str(s): {"forward": forward_flops(config["model"], s),
                                         "train": train_flops(config["model"], s)} for s in args.size},
                  "layers": conv_layers(config["model"], args.size[0])},
        "memory_note": ("CPU: peak_memory_mb is this process's peak RSS during one untimed step of the contender; "
                        "all contenders share the process, so it includes the others' resident state"
                        if args.device == "cpu" else
                        "GPU: peak_memory_mb is device memory (torch: max_memory_allocated, reset per contender; "
                        "JAX: the allocator's peak_bytes_in_use, cumulative over the process)"),
        "results": rows, "ratios": ratios, "targets": compute_targets(rows, ratios), "notes": notes}
    if not args.no_pipeline:
        print("data pipeline", flush=True)
        result["pipeline"] = pipeline_section(config, rows, args.batch, args.size, args.quick)
    else:
        result["pipeline"] = {"skipped": "--no-pipeline"}
    if not args.no_layer_profile:
        from benchmarks.layer_profile import profile_layers

        b, s = args.batch[0], args.size[0]
        print(f"per-layer profile (batch {b}, size {s})", flush=True)
        result["layer_profile"] = {"batch_size": b, "image_size": s,
                                   "rows": profile_layers(config, b, s, repeats=3, device=args.device)}
    result["wall_seconds"] = time.perf_counter() - t_start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, out.with_suffix(".md"))
    write_plot(result, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')} in {result['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
