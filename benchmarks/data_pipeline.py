"""The streamed data pipeline alone, on an archive of rasters: start-up, throughput, memory, a train step's wait.

    python -m benchmarks.data_pipeline --make-archive /work/archive --gb 8
    python -m benchmarks.data_pipeline --data /work/archive [--workers N] [--batch 8] [--size 256]
        [--sampling grid|random] [--shuffle-block PX] [--batches K] [--step-ms 670] [--out FILE.json]
        [--units auto|intensity|amplitude|db|log8] [--band N] [--strict]

``startup_seconds``: from opening the archive to the first batch (index, preprocessing fit, worker start);
``patches_per_second``: batches 2..K of one training epoch as fast as they come; ``peak_rss_mb`` /
``peak_pss_mb``: the whole process tree (this process plus Grain's workers, sampled every 50 ms; RSS counts
shared libraries once per process, PSS splits them);
``dataset_bytes``: the archive's pixels as float32; ``gdal_cachemax``: the environment's GDAL block cache size
(set it below the archive's size to measure a small archive as a large one); ``step_wait_ms``: the mean time a
train step of ``--step-ms`` (sleeping, so the CPU stays free, as with a GPU step) waits for its next batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.core.cli import add_band_strict_args, add_units_arg, run_main
from sar_jax.core.errors import SarJaxError

ARCHIVE_SCENE = 16_384  # pixels per side of one archive scene (1 GiB of float32)
TILE = 512
WAIT_STEPS = 30  # simulated train steps for the wait measurement


def write_archive(directory: str | Path, gb: float, seed: int = 0, scene: int = ARCHIVE_SCENE) -> list[Path]:
    """Synthetic float32 sigma0 (linear intensity) GeoTIFFs, DEFLATE (zlib, level 1) in 512 x 512 tiles, with
    zero no-data margins (top rows and a slanted swath edge, as in GRD products), a ``UNITS=intensity``
    tag and nearest-neighbour overviews (2, 4, 8, 16) for the decimated validity masks; ``gb`` GB of pixels."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    n = max(1, round(gb * 1e9 / (scene * scene * 4)))
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        path = out / f"scene_{k:02d}.tif"
        tmp = path.with_name(path.name + ".part")
        profile = {"driver": "GTiff", "height": scene, "width": scene, "count": 1, "dtype": "float32",
                   "tiled": True, "blockxsize": TILE, "blockysize": TILE, "compress": "deflate", "zlevel": 1,
                   "crs": "EPSG:32633", "transform": from_origin(500_000 + 200_000 * k, 5_000_000, 10, 10),
                   "BIGTIFF": "YES"}
        field_db = rng.uniform(-22, 0, (scene // 1024 + 1, scene // 1024 + 1))  # 1 km fields of different dB
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.update_tags(UNITS="intensity")
            for r0 in range(0, scene, TILE):
                rows = np.arange(r0, r0 + TILE)[:, None]
                cols = np.arange(scene)[None, :]
                refl = 10 ** (field_db[rows // 1024, cols // 1024] / 10)
                strip = (refl * 0.25 * rng.standard_gamma(4.0, (TILE, scene), dtype=np.float32)).astype(np.float32)
                strip[(rows < 300) | (cols < 400 + rows // 8)] = 0.0  # no-data margins
                dst.write(strip, 1, window=rasterio.windows.Window(0, r0, scene, TILE))
        with rasterio.open(tmp, "r+") as dst:
            dst.build_overviews([2, 4, 8, 16], Resampling.nearest)
        tmp.rename(path)
        paths.append(path)
        print(f"wrote {path} ({k + 1}/{n})", flush=True)
    return paths


class TreePeakRss:
    """Peak memory of this process plus its children (Grain's workers), sampled every 50 ms: the sum of
    their RSS (shared libraries counted once per process) and of their PSS (shared pages split)."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            rss = pss = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    info = p.memory_full_info()
                except psutil.Error:
                    continue
                rss, pss = rss + info.rss, pss + info.pss
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(0.05)

    def __enter__(self) -> TreePeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def peaks_mb(self) -> tuple[float, float]:
        """(peak RSS, peak PSS) of the tree in MB; the RSS peak is at least this process's VmHWM."""
        hwm = 0
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
        return max(self.peak_rss, hwm) / 2**20, self.peak_pss / 2**20


def bench_config(data: str, workers: int, batch: int, size: int, sampling: str, batches: int,
                 shuffle_block: int | None = None, units: str = "auto", band: int | None = None,
                 strict: bool = False) -> dict[str, Any]:
    """The baseline config on ``data`` with the benchmark's pipeline settings; ``units``, ``band`` and
    ``strict`` are ``data.units``, ``data.band`` and ``data.strict``."""
    from sar_jax.core.config import load_config

    null = lambda v: "null" if v is None else v
    config, _ = load_config("baseline", [f"data.workers={workers}", f"train.batch_size={batch}",
                                         f"data.patch_size={size}", f"data.sampling={sampling}",
                                         f"data.patches_per_epoch={(batches + 2) * batch}", "data.eval_patches=32",
                                         f"data.shuffle_block={null(shuffle_block)}", f"data.units={units}",
                                         f"data.band={null(band)}", f"data.strict={str(strict).lower()}"],
                            data_path=data)
    return config


def measure(config: dict[str, Any], batches: int, step_ms: float) -> dict[str, Any]:
    """Start-up, throughput, peak RSS and a simulated train step's wait on ``config``'s training split."""
    from sar_jax.data.pipeline import build_datasets, make_loaders

    load_before = os.getloadavg()
    with TreePeakRss() as rss:
        t0 = time.perf_counter()
        datasets = build_datasets(config)
        loader = make_loaders(datasets, config)["train"]
        batches = min(batches, len(loader))
        it = loader.epoch(1)
        next(it)
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        n = 0
        for _ in range(batches - 1):
            n += len(next(it))
        seconds = time.perf_counter() - t1
        it.close()
        waits = []
        if step_ms > 0:
            it = loader.epoch(2)
            next(it)
            for _ in range(min(batches, WAIT_STEPS + 1) - 1):
                time.sleep(step_ms / 1000)  # the step runs on the accelerator; the CPU is free meanwhile
                t2 = time.perf_counter()
                next(it)
                waits.append(time.perf_counter() - t2)
            it.close()
    data_cfg = config["data"]
    peak_rss, peak_pss = rss.peaks_mb()
    return {"startup_seconds": startup, "patches_per_second": n / seconds, "peak_rss_mb": peak_rss,
            "peak_pss_mb": peak_pss,
            "dataset_bytes": int(sum(4 * s.height * s.width for s in datasets.scenes)),
            "scenes": len(datasets.scenes), "units": data_cfg["units"], "workers": data_cfg["workers"],
            "sampling": data_cfg["sampling"],
            "shuffle_block": data_cfg["shuffle_block"],
            "batch": config["train"]["batch_size"], "size": data_cfg["patch_size"], "batches": batches,
            "grid_train_windows": int(len(datasets.windows["train"])), "step_ms": step_ms,
            "step_wait_ms_mean": 1000 * float(np.mean(waits)) if waits else None,
            "step_wait_ms_max": 1000 * float(np.max(waits)) if waits else None,
            "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]], "cpu_count": os.cpu_count(),
            "gdal_cachemax": os.environ.get("GDAL_CACHEMAX")}


# ---------------------------------------------------------------------- small in-memory/file sources
# (the data-pipeline section of benchmarks.throughput: synthetic scenes, .npy and .png files, batches delivered
# by the train loader when nothing consumes them)


def _scenes_config(config: dict[str, Any], batch_size: int, image_size: int) -> dict[str, Any]:
    cfg = copy.deepcopy(config)
    cfg["train"]["batch_size"] = batch_size
    cfg["data"].update(patch_size=image_size, stride=image_size, num_scenes=6, scene_size=4 * image_size,
                       val_fraction=0.17, test_fraction=0.17)
    return cfg


def _write_scenes(directory: Path, kind: str, count: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        intensity = rng.gamma(4.0, 0.25, (size, size)).astype(np.float32)
        if kind == "npy":
            np.save(directory / f"scene{i}.npy", intensity)
        else:
            from PIL import Image

            db = 10 * np.log10(intensity + 1e-6)
            img = np.clip((db - db.min()) / (db.max() - db.min()) * 255, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(directory / f"scene{i}.png")


def _iterate(loader: Any, min_seconds: float, min_batches: int) -> dict[str, float]:
    images = batches = epoch = 0
    t0 = time.perf_counter()
    while True:
        for batch in loader.epoch(epoch):
            images += len(batch)
            batches += 1
        epoch += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds and batches >= min_batches:
            return {"images_per_second": images / elapsed, "batches": batches, "seconds": elapsed}


def pipeline_throughput(config: dict[str, Any], batch_size: int, image_size: int,
                        min_seconds: float = 1.0, min_batches: int = 20) -> dict[str, dict[str, Any]]:
    """``{source: {images_per_second, prepare_seconds, train_patches, batches, seconds}}`` for the
    synthetic, npy and png sources."""
    from sar_jax.data.pipeline import build_datasets, make_loaders

    out: dict[str, dict[str, Any]] = {}
    cfg = _scenes_config(config, batch_size, image_size)
    with tempfile.TemporaryDirectory(prefix="sar-bench-") as tmp:
        sources: list[tuple[str, dict[str, Any]]] = [("synthetic", cfg)]
        for kind in ("npy", "png"):
            directory = Path(tmp) / kind
            directory.mkdir()
            _write_scenes(directory, kind, 6, 4 * image_size, seed=len(sources))
            file_cfg = copy.deepcopy(cfg)
            file_cfg["data"].update(source="files", path=str(directory),
                                   units="intensity" if kind == "npy" else "auto")
            sources.append((f"files_{kind}", file_cfg))
        for name, scfg in sources:
            t0 = time.perf_counter()
            datasets = build_datasets(scfg)
            prepare = time.perf_counter() - t0
            loader = make_loaders(datasets, scfg)["train"]
            out[name] = {**_iterate(loader, min_seconds, min_batches), "prepare_seconds": prepare,
                         "train_patches": int(len(datasets.windows["train"]))}
    return out


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.data_pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--data", help="a raster file or a folder of them")
    add_units_arg(p, "--data", complex_to="intensity")
    add_band_strict_args(p)
    p.add_argument("--workers", type=int, default=0, help="Grain worker processes (0: in-process)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256, help="patch size (px)")
    p.add_argument("--sampling", choices=("grid", "random"), default="grid")
    p.add_argument("--shuffle-block", type=int, default=None, metavar="PX",
                   help="data.shuffle_block: read the windows square by square (default: one global shuffle)")
    p.add_argument("--batches", type=int, default=100, help="batches to time")
    p.add_argument("--step-ms", type=float, default=0.0,
                   help="simulated train step (ms) for the wait measurement; 0 skips it")
    p.add_argument("--out", help="append the result to this JSON file (a list of runs)")
    p.add_argument("--make-archive", metavar="DIR", help="write a synthetic GeoTIFF archive to DIR and exit")
    p.add_argument("--gb", type=float, default=8.0, help="archive size in GB of float32 pixels")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write an archive, or measure the pipeline on one."""
    args = setup_args().parse_args(argv)
    if args.make_archive:
        write_archive(args.make_archive, args.gb)
        return 0
    if not args.data:
        raise SarJaxError("--data PATH (or --make-archive DIR) is required")
    config = bench_config(args.data, args.workers, args.batch, args.size, args.sampling, args.batches,
                          args.shuffle_block, args.units, args.band, args.strict)
    result = measure(copy.deepcopy(config), args.batches, args.step_ms)
    print(json.dumps(result, indent=1))
    if args.out:
        out = Path(args.out)
        runs = json.loads(out.read_text()) if out.is_file() else []
        out.write_text(json.dumps(runs + [result], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
