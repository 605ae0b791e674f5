"""Memory bound of the streamed pipeline: a >= 1 GB raster is trained from without reading it whole."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

# Grain imports JAX's profiler whenever JAX is installed (~180 MB of shared libraries, whatever the data);
# the subprocess blocks that import, as on a host without JAX (sar_torch_ref), to measure the pipeline itself.
SCRIPT = """
import json, sys
sys.modules["jax"] = None
from pathlib import Path
from sar_jax.core.config import load_config
from sar_jax.data.pipeline import build_datasets, make_loaders

config, _ = load_config("baseline", ["data.sampling=random", "data.patches_per_epoch=64", "data.eval_patches=16",
                                     "data.fit_pixels=4000000", "train.batch_size=8"], data_path=sys.argv[1])
datasets = build_datasets(config)
loaders = make_loaders(datasets, config)
n = sum(len(b) for b in loaders["train"].epoch(1)) + sum(len(b) for b in loaders["val"].epoch(0))
status = Path("/proc/self/status").read_text().splitlines()
hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"patches": n, "vmhwm_mb": hwm / 1024, "pixels": datasets.scenes[0].height * datasets.scenes[0].width,
                  "jax": "jax" in sys.modules and sys.modules["jax"] is not None}))
"""


@pytest.mark.slow
def test_streaming_a_1gb_raster_stays_under_400mb(tmp_path):
    import rasterio
    from rasterio.enums import Resampling

    side = 16_384  # 16384^2 float32 = 1 GiB, in 512 x 512 tiles, a zero no-data margin on the left
    path = tmp_path / "big.tif"
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", height=side, width=side, count=1, dtype="float32",
                           tiled=True, blockxsize=512, blockysize=512) as dst:
            dst.update_tags(UNITS="intensity")
            for r in range(0, side, 512):
                strip = rng.random((512, side), dtype=np.float32) + np.float32(0.01)
                strip[:, :300] = 0.0
                dst.write(strip, 1, window=rasterio.windows.Window(0, r, side, 512))
        with rasterio.open(path, "r+") as dst:
            dst.build_overviews([16], Resampling.nearest)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["pixels"] * 4 >= 2**30 and not out["jax"]
    assert out["patches"] == 64 + 16
    assert out["vmhwm_mb"] < 400, out
