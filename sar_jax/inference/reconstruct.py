"""Reconstruct a whole SAR scene of any size with a trained autoencoder, tile by tile.

    python -m sar_jax.reconstruct --checkpoint RUN_DIR --input SCENE --output OUT
        [--tile 256] [--overlap 32] [--batch-size 16] [--save-latent LATENT.npz]
    python -m sar_jax.reconstruct --from-latent LATENT.npz --output OUT [--checkpoint RUN_DIR]

The scene goes through the checkpoint's preprocessing (dB, clip, [0, 1]) and back through its
exact inverse, so the output holds the input's units: intensity, amplitude, or an 8-bit
log-scaled view (written as uint8, rounded and clipped). The output's format follows its
extension: ``.tif/.tiff`` (float32 or uint8; the input's GeoTIFF/GDAL tags are copied), ``.npy``
or ``.png`` (8-bit only). Overlapping tiles are blended with raised-cosine weights (see
:mod:`sar_jax.inference.tiling`); rows are read lazily and written as they are finished.

``--save-latent`` also stores every tile's latent (float16 unless ``--latent-dtype float32``)
with the tiling, preprocessing, units and the checkpoint's config; ``--from-latent`` decodes it
back to the scene (the checkpoint defaults to the one recorded in the file).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sar_jax.core.errors import SarJaxError
from sar_jax.data.preprocess import denormalize, normalize
from sar_jax.inference.scene_io import (
    OUTPUT_EXTENSIONS,
    SceneWriter,
    check_output_path,
    open_scene,
    write_atomic,
)
from sar_jax.inference.tiling import (
    Blender,
    TileGrid,
    batched_apply,
    check_tiling,
    input_tiles,
)

LATENT_FORMAT = "sar_jax-latent-v1"


def output_dtype(units: str) -> np.dtype:
    return np.dtype(np.uint8 if units == "log8" else np.float32)


def to_units(x01: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """[0, 1] -> the input's units; 8-bit views rounded and clipped to uint8."""
    values = denormalize(x01, params, bias_correction=False)
    if params["mode"] == "log8":
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return values.astype(np.float32)


def _progress(total: int, enabled: bool, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="tile", disable=None if enabled else True, dynamic_ncols=True)


def _check_common(output: str | Path, batch_size: int) -> None:
    ext = Path(output).suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise SarJaxError(f"--output {output}: unsupported extension '{Path(output).suffix}'; expected one of "
                          f"{', '.join(OUTPUT_EXTENSIONS)}")
    if batch_size < 1:
        raise SarJaxError(f"--batch-size {batch_size}: expected a positive integer")


def _check_latent_path(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() != ".npz":
        raise SarJaxError(f"--save-latent {p}: expected a .npz file name")
    if not p.parent.exists():
        raise SarJaxError(f"--save-latent {p}: folder {p.parent} does not exist")
    return p


def reconstruct_scene(checkpoint: str | Path, input_path: str | Path, output: str | Path, *, tile: int = 256,
                      overlap: int = 32, batch_size: int = 16, save_latent: str | Path | None = None,
                      latent_dtype: str = "float16", units: str | None = None, which: str = "best",
                      band: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Encode and decode ``input_path`` tile by tile into ``output``; returns a summary."""
    from sar_jax.inference import run as inference
    from sar_jax.training import checkpointing

    check_tiling(tile, overlap)
    _check_common(output, batch_size)
    if latent_dtype not in inference.LATENT_DTYPES:
        raise SarJaxError(f"--latent-dtype {latent_dtype}: expected float16 or float32")
    latent_path = _check_latent_path(save_latent) if save_latent else None
    if not Path(checkpoint).is_dir():
        raise SarJaxError(f"--checkpoint {checkpoint}: no such run directory")
    meta = checkpointing.read_metadata(checkpoint, which)
    scene = open_scene(input_path, band=band)
    params = inference.resolve_units(meta["preprocessing_params"], scene.is_8bit, units, f"input {input_path}")
    out_path = check_output_path(output, params["mode"])
    run = inference.load_run(checkpoint, which)
    grid = TileGrid.create(scene.shape[0], scene.shape[1], tile, overlap)
    cols = grid.col_indices()
    linear = params["mode"] != "log8"

    def load_band(i: int) -> np.ndarray:
        raw = scene.read_rows(grid.row_indices(i))[:, cols]
        if linear and float(raw.min()) < 0:
            raise SarJaxError(f"input {input_path}: negative values in a {params['mode']} raster; "
                              "expected linear units >= 0")
        return normalize(raw, params)[..., None]

    recon = inference.reconstruct_fn(run.model)
    latents = None
    if latent_path is not None:
        lh, lw = grid.tile_h // 16, grid.tile_w // 16
        latents = np.zeros((grid.rows, grid.cols, lh, lw, run.config["model"]["latent_channels"]),
                           inference.LATENT_DTYPES[latent_dtype])
    writer = SceneWriter(out_path, scene.shape, output_dtype(params["mode"]), scene.geotags)
    blender = Blender(grid, lambda r0, block: writer.write(r0, to_units(block, params)))
    t0 = time.perf_counter()
    bar = _progress(grid.num_tiles, progress, "reconstruct")
    try:
        fn = lambda batch: recon(run.variables, batch)  # noqa: E731
        for (i, j), (x_hat, z) in batched_apply(input_tiles(grid, load_band), fn, batch_size):
            blender.add(i, j, x_hat[..., 0])
            if latents is not None:
                latents[i, j] = z
            bar.update(1)
        bar.close()
        if latent_path is not None:
            info = {"format": LATENT_FORMAT, "grid": grid.to_dict(), "preprocessing_params": params,
                    "units": params["mode"], "output_dtype": str(output_dtype(params["mode"])),
                    "latent_dtype": latent_dtype, "config": run.config,
                    "checkpoint": str(Path(checkpoint).resolve()), "which": which, "epoch": run.epoch,
                    "input": str(input_path), "input_dtype": scene.source_dtype, "geotags": scene.geotags}
            write_atomic(latent_path, lambda tmp: np.savez(tmp, z=latents, meta=np.array(json.dumps(info))))
        path = writer.commit()
    except BaseException:
        bar.close()
        writer.abort()
        raise
    seconds = time.perf_counter() - t0
    return {"output": str(path), "shape": list(scene.shape), "units": params["mode"], "tiles": grid.num_tiles,
            "tile": [grid.tile_h, grid.tile_w], "overlap": overlap, "seconds": seconds,
            "latent": str(latent_path) if latent_path else None, "lazy_input": scene.lazy}


def read_latent(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """``(z, metadata)`` of a latent file written by ``--save-latent``."""
    p = Path(path)
    if not p.is_file():
        raise SarJaxError(f"--from-latent {p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as npz:
            z = npz["z"]
            info = json.loads(str(npz["meta"]))
    except Exception as exc:
        raise SarJaxError(f"--from-latent {p}: not a sar_jax latent file ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if not isinstance(info, dict) or info.get("format") != LATENT_FORMAT:
        raise SarJaxError(f"--from-latent {p}: not a sar_jax latent file (format {info.get('format')!r})")
    return z, info


def decode_latent(latent: str | Path, output: str | Path, *, checkpoint: str | Path | None = None,
                  batch_size: int = 16, progress: bool = True) -> dict[str, Any]:
    """Decode a latent file back to the scene in its original units and size."""
    from sar_jax.inference import run as inference

    _check_common(output, batch_size)
    z, info = read_latent(latent)
    grid = TileGrid.from_dict(info["grid"])
    params = info["preprocessing_params"]
    out_path = check_output_path(output, params["mode"])
    checkpoint = checkpoint or info["checkpoint"]
    run = inference.load_run(checkpoint, info.get("which", "best"))
    expected = (grid.rows, grid.cols, grid.tile_h // 16, grid.tile_w // 16, run.config["model"]["latent_channels"])
    if tuple(z.shape) != expected:
        raise SarJaxError(f"--from-latent {latent}: latent shape {tuple(z.shape)} does not fit the tiling and"
                          f" the checkpoint's model (expected {expected})")
    if run.config["model"] != info["config"]["model"]:
        raise SarJaxError(f"--from-latent {latent}: was encoded by a different model than {checkpoint}")
    decode = inference.decode_fn(run.model)
    writer = SceneWriter(out_path, (grid.height, grid.width), output_dtype(params["mode"]), info.get("geotags"))
    blender = Blender(grid, lambda r0, block: writer.write(r0, to_units(block, params)))
    items = (((i, j), z[i, j]) for i in range(grid.rows) for j in range(grid.cols))
    t0 = time.perf_counter()
    bar = _progress(grid.num_tiles, progress, "decode")
    try:
        fn = lambda batch: decode(run.variables, batch)  # noqa: E731
        for (i, j), (x_hat,) in batched_apply(items, fn, batch_size):
            blender.add(i, j, x_hat[..., 0])
            bar.update(1)
        bar.close()
        path = writer.commit()
    except BaseException:
        bar.close()
        writer.abort()
        raise
    return {"output": str(path), "shape": [grid.height, grid.width], "units": params["mode"],
            "tiles": grid.num_tiles, "seconds": time.perf_counter() - t0}


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m sar_jax.reconstruct", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="sar_jax run directory (its best checkpoint)")
    parser.add_argument("--input", default=None, help="SAR scene (.tif/.tiff, .npy, .png/.jpg)")
    parser.add_argument("--output", required=True, help="output file; .tif/.tiff, .npy or .png (8-bit only)")
    parser.add_argument("--tile", type=int, default=256, help="tile size, a multiple of 16 (default 256)")
    parser.add_argument("--overlap", type=int, default=32, help="tile overlap in px, < tile/2 (default 32)")
    parser.add_argument("--batch-size", type=int, default=16, help="tiles per model call (default 16)")
    parser.add_argument("--save-latent", default=None, metavar="LATENT.npz", help="also store the latents")
    parser.add_argument("--latent-dtype", default="float16", choices=("float16", "float32"),
                        help="precision of the stored latents (default float16)")
    parser.add_argument("--from-latent", default=None, metavar="LATENT.npz",
                        help="decode a latent file instead of reading --input")
    parser.add_argument("--units", default="auto", choices=("auto", "intensity", "amplitude", "log8"),
                        help="what the input's values are (default: uint8 -> log8, else the checkpoint's units)")
    parser.add_argument("--which", default="best", choices=("best", "latest"), help="checkpoint to use")
    parser.add_argument("--band", type=int, default=None, help="band of a multi-band raster")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = setup_args().parse_args(argv)
    if args.from_latent:
        if args.input or args.save_latent:
            raise SarJaxError("--from-latent decodes a latent file: do not give --input or --save-latent")
        summary = decode_latent(args.from_latent, args.output, checkpoint=args.checkpoint,
                                batch_size=args.batch_size, progress=not args.quiet)
    else:
        if not args.input or not args.checkpoint:
            raise SarJaxError("give --checkpoint RUN_DIR and --input SCENE (or --from-latent LATENT.npz)")
        summary = reconstruct_scene(args.checkpoint, args.input, args.output, tile=args.tile, overlap=args.overlap,
                                    batch_size=args.batch_size, save_latent=args.save_latent,
                                    latent_dtype=args.latent_dtype, units=args.units, which=args.which,
                                    band=args.band, progress=not args.quiet)
    h, w = summary["shape"]
    print(f"wrote {summary['output']}: {h} x {w} {summary['units']}, {summary['tiles']} tiles,"
          f" {summary['seconds']:.1f}s" + (f"; latents in {summary['latent']}" if summary.get("latent") else ""))
    return 0

