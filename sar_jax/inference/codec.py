"""The model as an int8-latent codec over a run's test split, coded as whole regions.

The codec study and the sweep's bit rate code whole test regions (not patches): a latent file is
one per scene, so its per-band scale and offset and DEFLATE's framing are paid once per region, as a
JPEG 2000 codestream's header is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sar_jax.inference.latent import dequantize, payload_bytes, quantize
from sar_jax.inference.run import LoadedRun, decode_fn, encode_fn
from sar_jax.nn.models import SARAutoencoder


@dataclass
class EvalRegion:
    """One test region: normalised input, its original values and validity, and the clean truth if known."""

    name: str
    x: np.ndarray  # (H, W) float32 in [0, 1]
    values: np.ndarray  # (H, W) the input in the data's units, as read (not clipped)
    valid: np.ndarray  # (H, W) bool
    clean: np.ndarray | None  # (H, W) speckle-free reflectivity in [0, 1] (synthetic data)


def eval_regions(run: LoadedRun) -> list[EvalRegion]:
    """The test split's regions of a run's data, cropped to multiples of the model's downsampling (16),
    normalised with the run's preprocessing; on synthetic data with the speckle-free reflectivity."""
    from sar_jax.data.pipeline import build_datasets
    from sar_jax.data.preprocess import normalize
    from sar_jax.data.synthetic import synthetic_scenes_with_reflectivity

    config, params = run.config, run.preprocessing_params
    datasets = build_datasets(config)
    data_cfg = config["data"]
    truth = None
    if data_cfg["source"] == "synthetic":
        truth = [refl for _, refl in synthetic_scenes_with_reflectivity(
            data_cfg["num_scenes"], data_cfg["scene_size"], data_cfg["looks"], config["train"]["seed"])]
    regions = []
    for k, r in enumerate(datasets.regions["test"]):
        step = SARAutoencoder.DOWNSAMPLING
        h, w = (r.r1 - r.r0) // step * step, (r.c1 - r.c0) // step * step
        values, valid = datasets.scenes[r.scene].read((r.r0, r.c0, h, w))
        clean = None
        if truth is not None:
            clean = normalize(truth[r.scene][r.r0:r.r0 + h, r.c0:r.c0 + w], params)
        regions.append(EvalRegion(f"{Path(datasets.sources[r.scene]).name}#{k}", normalize(values, params),
                                  values, valid, clean))
    return regions


class Int8LatentCodec:
    """A trained run as a codec: encoder -> int8 latent (the latent file's quantiser) -> decoder; the rate
    is :func:`sar_jax.inference.latent.payload_bytes` of the stored values."""

    def __init__(self, run: LoadedRun) -> None:
        self.run = run
        self.encode, self.decode = encode_fn(run.model), decode_fn(run.model)

    def quantized(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(H, W)`` in [0, 1] -> its int8 latent ``(stored, scales, offsets)`` (:func:`quantize`)."""
        return quantize(np.asarray(self.encode(self.run.variables, image[None, :, :, None]))[0], "int8")

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """``(H, W)`` in [0, 1] -> (decoded ``(H, W)``, bytes)."""
        stored, scales, offsets = self.quantized(image)
        x_hat = np.asarray(self.decode(self.run.variables, dequantize(stored, scales, offsets)[None]))[0, ..., 0]
        return x_hat, payload_bytes(stored)


def int8_latent_bpp(run: LoadedRun) -> float:
    """Bits per input pixel of the int8 latents of the test regions, each coded whole (encoded only)."""
    regions, codec = eval_regions(run), Int8LatentCodec(run)
    return 8.0 * sum(payload_bytes(codec.quantized(r.x)[0]) for r in regions) / sum(r.x.size for r in regions)
