"""Throughput of the data pipeline alone: ``sar_jax.data`` datasets + ``BatchIterator``.

Three sources: synthetic scenes, and files written to a temporary directory (``.npy``
intensity scenes, and 8-bit ``.png`` renderings; one kind per dataset, as the reader requires).
``prepare_seconds`` is the one-off load/split/normalise time; ``images_per_second`` is what the
shuffled, prefetching train iterator delivers when nothing consumes the batches.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.data.pipeline import build_datasets, make_loaders


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
    out: dict[str, dict[str, Any]] = {}
    cfg = _scenes_config(config, batch_size, image_size)
    with tempfile.TemporaryDirectory(prefix="sar-bench-") as tmp:
        sources: list[tuple[str, dict[str, Any]]] = [("synthetic", cfg)]
        for kind in ("npy", "png"):
            directory = Path(tmp) / kind
            directory.mkdir()
            _write_scenes(directory, kind, 6, 4 * image_size, seed=len(sources))
            file_cfg = copy.deepcopy(cfg)
            file_cfg["data"].update(source="files", path=str(directory), units="intensity" if kind == "npy" else "auto")
            sources.append((f"files_{kind}", file_cfg))
        for name, scfg in sources:
            t0 = time.perf_counter()
            datasets = build_datasets(scfg)
            prepare = time.perf_counter() - t0
            loader = make_loaders(datasets, scfg)["train"]
            out[name] = {**_iterate(loader, min_seconds, min_batches), "prepare_seconds": prepare,
                         "train_patches": int(len(datasets.train))}
    return out
