"""Peak memory and halo overhead of full-scene reconstruction on a large memory-mapped scene.

    python -m benchmarks.reconstruct_memory [--size 20000] [--tile 512] [--batch-size 4] [--out DIR]

Writes a ``size x size`` uint8 log8 scene as a memory-mapped ``.npy`` (tiled copies of a
speckled 1024 px block), reconstructs it with ``reconstruct_scene`` and a tiny model with random
weights (the kind the tests use; memory and tiling do not depend on the weights) into a ``.npy``
streamed to disk, and records the peak RSS growth over a warm-up run on a small scene (the
contract: <= 1.5 GB), the pixels the windows computed over the scene's pixels (the halo's extra
compute; contract at the default tile: <= 1.6x) and the throughput, in
``benchmarks/results/reconstruct-memory.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
import types
from pathlib import Path

import numpy as np


def tiny_run(tmp: Path) -> types.SimpleNamespace:
    """A tiny random model with log8 preprocessing, in the fields ``reconstruct_scene`` reads."""
    import jax

    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.nn.registry import init_variables

    cfg = {"kind": "baseline", "in_channels": 1, "base_channels": 4, "latent_channels": 4, "kernel_size": 5,
           "negative_slope": 0.2}
    model = SARAutoencoder.from_config(cfg)
    variables = jax.jit(lambda key: init_variables(model, key))(jax.random.PRNGKey(0))
    params = {"mode": "log8", "vmin": 0.0, "vmax": 255.0, "floor": 1e-6, "percentiles": [1.0, 99.0]}
    return types.SimpleNamespace(model=model, variables=variables, config={"model": cfg}, preprocessing_params=params,
                                 run_dir=tmp, which="best", epoch=0)


def write_scene(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    block = np.clip(rng.normal(120, 30, (1024, 1024)), 0, 255).astype(np.uint8)
    scene = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(size, size))
    for r in range(0, size, 1024):
        for c in range(0, size, 1024):
            scene[r:r + 1024, c:c + 1024] = block[:min(1024, size - r), :min(1024, size - c)]
    scene.flush()
    del scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    from sar_jax.inference.reconstruct import reconstruct_scene

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmp = Path(tmp)
        run = tiny_run(tmp)
        np.save(tmp / "small.npy", np.full((700, 900), 120, np.uint8))
        write_scene(tmp / "big.npy", args.size)
        kw = {"tile": args.tile, "batch_size": args.batch_size, "progress": False}
        reconstruct_scene(run, tmp / "small.npy", tmp / "small_out.npy", **kw)  # compile and warm up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        summary = reconstruct_scene(run, tmp / "big.npy", tmp / "big_out.npy", **kw)
        seconds = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = np.load(tmp / "big_out.npy", mmap_mode="r")
        assert out.shape == (args.size, args.size)
    result = {"size": args.size, "tile": args.tile, "halo": summary["halo"], "batch_size": args.batch_size,
              "tiles": summary["tiles"], "window": summary["window"],
              "computed_pixels_over_scene_pixels": summary["compute_ratio"],
              "peak_rss_growth_mb": (after - before) / 1024, "peak_rss_mb": after / 1024, "seconds": seconds,
              "megapixels_per_second": args.size**2 / seconds / 1e6, "machine": platform.platform(),
              "model": "tiny (base 4, latent 4), random weights", "input": "uint8 log8 .npy, memory-mapped"}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "reconstruct-memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
