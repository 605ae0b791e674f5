"""Reconstruct SAR scenes of any size with a trained autoencoder: exactly the whole-scene pass, tile by tile.

    python -m sar_jax.reconstruct --checkpoint RUN_DIR --input SCENE --output OUT
        [--tile 512] [--halo H] [--batch-size 4] [--save-latent Z.tif] [--latent-dtype float16]
    python -m sar_jax.reconstruct --checkpoint RUN_DIR --input FOLDER_OR_GLOB --output FOLDER
        [--save-latent-dir DIR] [--num-processes N --process-id I]
    python -m sar_jax.reconstruct --from-latent Z.tif --output OUT [--checkpoint RUN_DIR]

One way through, per tile row: read window -> normalize -> model -> crop -> denormalize -> write.
The output equals one pass of the model over the whole scene padded to a multiple of 16 (see
:mod:`sar_jax.inference.tiling`); it holds the input's units (intensity, amplitude, or an 8-bit
log view written as uint8) in the format of its extension (``.tif/.tiff`` keeps the input's CRS,
transform and tags, ``.npy``, ``.png`` for 8-bit only). No-data input pixels (the raster's nodata
value, NaN/Inf, exact 0 in linear units) enter the model as one constant per scene (the median
of the scene's valid normalised values), so they change nothing beyond the model's reach, and
are written back as no-data (the input's nodata value, else NaN for float outputs).

``--save-latent`` writes the latent as one GeoTIFF (:mod:`sar_jax.inference.latent`);
``--from-latent`` decodes one in halo tiles, refusing a checkpoint whose fingerprint differs
from the one that encoded it unless ``--allow-other-checkpoint``.

Folder or glob ``--input``: every scene gets ``OUTPUT/<name><ext>``; scenes whose outputs exist
are skipped (outputs are renamed into place only when complete), a failing scene is reported in
one line and the rest go on, and a summary table ends the run (exit status 1 if any failed).
``--num-processes N --process-id I`` (else ``SLURM_ARRAY_TASK_COUNT``/``SLURM_ARRAY_TASK_ID``)
give process I every N-th scene, so an array job shares a folder with no coordination.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sar_jax.core.cli import (
    add_examples,
    add_input_units_args,
    add_version_arg,
    flag_names,
    process_share,
    rename_params,
)
from sar_jax.core.config import CODEC_KINDS
from sar_jax.core.errors import SarJaxError
from sar_jax.data.preprocess import denormalize, log_bias_db, normalize
from sar_jax.data.readers import SUPPORTED_EXTENSIONS, list_sar_files
from sar_jax.inference.bitstream import decode_bitstream, reconstruct_coded
from sar_jax.inference.latent import LATENT_DTYPES, LatentRaster, fingerprint, write_latent
from sar_jax.inference.recon_report import count, print_summary, summary_table
from sar_jax.inference.scene_io import SceneWriter, check_output_path, output_name
from sar_jax.inference.tiling import (
    GRID,
    TileGrid,
    TileRows,
    batched_apply,
    default_halo,
    read_padded,
    window_tiles,
)

SAMPLE_ROWS = 64  # rows read to estimate the fill value and the clipped fraction before the pass
DEFAULT_TILE = 512


def output_dtype(units: str) -> np.dtype:
    return np.dtype(np.uint8 if units == "log8" else np.float32)


def to_units(x01: np.ndarray, params: dict[str, Any], bias_correction: bool = True) -> np.ndarray:
    """[0, 1] -> the input's units (log-domain bias corrected, see :mod:`sar_jax.data.preprocess`);
    8-bit views rounded and clipped to uint8."""
    values = denormalize(x01, params, bias_correction=bias_correction)
    if params["mode"] == "log8":
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return values.astype(np.float32)


def progress_bar(total: int, enabled: bool, desc: str) -> tqdm:
    """A tile progress bar (off with ``enabled`` False)."""
    return tqdm(total=total, desc=desc, unit="tile", disable=None if enabled else True, dynamic_ncols=True)


def _check_args(tile: int, halo: int | None, batch_size: int, latent_dtype: str) -> None:
    if not isinstance(tile, int) or tile < 16 or tile % 16:
        raise SarJaxError(f"tile {tile}: expected a positive multiple of 16 (the encoder halves the size 4 times)")
    if halo is not None and (halo < 0 or halo % 16):
        raise SarJaxError(f"halo {halo}: expected a non-negative multiple of 16")
    if batch_size < 1:
        raise SarJaxError(f"batch_size {batch_size}: expected a positive integer")
    if latent_dtype not in LATENT_DTYPES:
        raise SarJaxError(f"latent_dtype {latent_dtype}: expected one of {', '.join(LATENT_DTYPES)}")


def open_scene(run: Any, input_path: str | Path, units: str | None, band: int | None,
               allow_clipping: bool) -> tuple[Any, dict[str, Any], np.float32]:
    """``(raster, params, fill)``: the input opened with the checkpoint's params for its units, its clip
    range checked, and the one normalised value no-data pixels enter the model as (the median of the
    valid values of a few rows spread over the scene)."""
    from sar_jax.inference import run as inference

    raster, params = inference.open_input(input_path, run.preprocessing_params, units, band)
    h, w = raster.height, raster.width
    rows = np.unique(np.linspace(0, h - 1, min(h, SAMPLE_ROWS)).round().astype(int))
    col_step = max(1, w // 4096)
    parts = [raster.read((int(r), 0, 1, w)) for r in rows]
    sample = np.concatenate([v[0, ::col_step][m[0, ::col_step]] for v, m in parts])
    if sample.size == 0:
        raise SarJaxError(f"input {input_path}: no valid pixel in the rows sampled (all no-data?)")
    inference.check_clipping(sample, params, f"input {input_path}", allow_clipping)
    return raster, params, np.float32(np.median(normalize(sample, params)))


def read_normalized(raster: Any, params: dict[str, Any], fill: np.float32, padded_width: int,
                    s: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded rows ``[s, s + n)`` of the scene: ``(x (n, W, 1) normalised with no-data as fill, values, valid)``."""
    values, valid = read_padded(lambda win: np.stack(raster.read(win)), (raster.height, raster.width), (s, s + n),
                                (0, padded_width))
    valid = valid > 0
    return np.where(valid, normalize(values, params), fill)[..., None], values, valid


def reconstruct_scene(run: Any, input_path: str | Path, output: str | Path, *, tile: int = DEFAULT_TILE,
                      halo: int | None = None, batch_size: int = 4, save_latent: str | Path | None = None,
                      latent_dtype: str = "float16", units: str | None = None, band: int | None = None,
                      allow_clipping: bool = False, progress: bool = True) -> dict[str, Any]:
    """Encode and decode one scene into ``output`` (and its latent into ``save_latent``); a summary."""
    from sar_jax.inference import run as inference

    _check_args(tile, halo, batch_size, latent_dtype)
    kind = run.config["model"]["kind"]
    if save_latent and kind in CODEC_KINDS:
        return reconstruct_coded(run, input_path, output, save_latent, tile=tile, halo=halo, batch_size=batch_size,
                                 units=units, band=band, allow_clipping=allow_clipping, progress=progress)
    if save_latent and kind != "baseline":
        raise SarJaxError(f"--save-latent: model.kind {kind!r} has no latent to save (checkpoint {run.run_dir})")
    if save_latent and Path(save_latent).suffix.lower() not in (".tif", ".tiff"):
        raise SarJaxError(f"latent {save_latent}: expected a .tif file name (model.kind {kind!r}'s latent is a "
                          "GeoTIFF; .sarc bitstreams need model.kind factorized or hyperprior)")
    halo = default_halo(run.config["model"]) if halo is None else halo
    raster, params, fill = open_scene(run, input_path, units, band, allow_clipping)
    out_path = check_output_path(output, params["mode"])
    latent_path = check_output_path(save_latent, "float32", "latent") if save_latent else None
    h, w = raster.height, raster.width
    grid = TileGrid.create(h, w, tile, halo)

    nodata = raster.nodata if raster.nodata is not None else (np.nan if params["mode"] != "log8" else None)
    dtype = output_dtype(params["mode"])
    lo, hi = inference.clip_range(params)
    stats = {"valid": 0, "invalid": 0, "below": 0, "above": 0, "sum_in": 0.0, "sum_out": 0.0, "sum_raw": 0.0}
    valid_rows: dict[int, np.ndarray] = {}
    # mean ratios in linear units: dB values are averaged as intensity
    linear = (lambda v: 10.0 ** (np.asarray(v, np.float64) / 10)) if params["mode"] == "db" else (lambda v: v)
    pw = grid.cols.padded

    def read_band(s: int, n: int) -> np.ndarray:
        x, values, valid = read_normalized(raster, params, fill, pw, s, n)
        for a, na, sa in grid.rows.tiles():
            if sa == s and a not in valid_rows:  # this band's output rows: keep their input for stats
                keep = slice(a - s, a - s + min(na, h - a))
                valid_rows[a] = (values[keep, :w], valid[keep, :w])
        return x

    def write_rows(r0: int, block: np.ndarray) -> None:
        values, valid = valid_rows.pop(r0)
        out = to_units(block[..., 0], params)
        stats["valid"] += int(valid.sum())
        stats["invalid"] += int(valid.size - valid.sum())
        v_in = values[valid]
        stats["below"] += int((v_in < lo).sum())
        stats["above"] += int((v_in > hi).sum())
        raw_out = to_units(block[..., 0][valid], params, bias_correction=False)
        for key, v in (("sum_in", v_in), ("sum_out", out[valid]), ("sum_raw", raw_out)):
            stats[key] += float(linear(v).sum(dtype=np.float64))
        if nodata is not None:
            out = np.where(valid, out, np.asarray(nodata, dtype))
        writer.write(r0, out)

    model_fn = inference.reconstruct_fn(run.model) if kind == "baseline" else inference.image_fn(run.model)
    latents = None
    if latent_path is not None:
        latents = np.zeros((grid.rows.padded // 16, pw // 16, run.config["model"]["latent_channels"]), np.float32)
    tags = dict(raster.tags, UNITS=params["mode"]) if params["mode"] != "log8" else raster.tags
    writer = SceneWriter(out_path, (h, w), dtype, crs=raster.crs, transform=raster.transform, tags=tags,
                         nodata=None if nodata is None else float(nodata))
    images = TileRows(grid, write_rows)
    codes = TileRows(grid, lambda r0, b: latents.__setitem__(slice(r0, r0 + len(b)), b), scale=16,
                     height=latents.shape[0] if latents is not None else 0, width=pw // 16)
    t0 = time.perf_counter()
    bar = progress_bar(grid.num_tiles, progress, "reconstruct")
    latent_bytes = None
    try:
        fn = lambda batch: model_fn(run.variables, batch)  # noqa: E731
        for (i, j), (x_hat, *z) in batched_apply(window_tiles(grid, read_band), fn, batch_size):
            images.add(i, j, x_hat)
            if latents is not None:
                codes.add(i, j, z[0])
            bar.update(1)
        bar.close()
        if latent_path is not None:
            tags = {"scene_shape": [h, w], "preprocessing_params": params, "units": params["mode"],
                    "model_config": run.config["model"], "checkpoint_fingerprint": fingerprint(run.variables),
                    "checkpoint": str(Path(run.run_dir).resolve()), "which": run.which,
                    "input": str(input_path), "input_dtype": raster.source_dtype, "nodata": nodata}
            latent_bytes = write_latent(latent_path, latents, latent_dtype, crs=raster.crs,
                                        transform=raster.transform, tags=tags)
        path = writer.commit()
    except BaseException:
        bar.close()
        writer.abort()
        raise
    if stats["invalid"]:
        warnings.warn(f"input {input_path}: {stats['invalid']} no-data pixels (nodata value, NaN/Inf or 0) "
                      "written back as no-data", stacklevel=2)
    summary = {"input": str(input_path), "output": str(path), "shape": [h, w], "units": params["mode"],
               "tiles": grid.num_tiles, "tile": tile, "halo": halo, "window": list(grid.window_shape),
               "compute_ratio": grid.computed_pixels() / (h * w), "seconds": time.perf_counter() - t0,
               "invalid_pixels": stats["invalid"],
               "clipped_fraction": (stats["below"] + stats["above"]) / max(1, stats["valid"]),
               "mean_ratio": stats["sum_out"] / stats["sum_in"] if stats["sum_in"] > 0 else None,
               "mean_ratio_uncorrected": stats["sum_raw"] / stats["sum_in"] if stats["sum_in"] > 0 else None,
               "log_bias_db": log_bias_db(params),
               "input_bits_per_pixel": raster.bits_per_pixel, "phase_dropped": raster.phase_dropped,
               "latent": str(latent_path) if latent_path else None, "latent_bytes": latent_bytes}
    if latent_bytes is not None:
        summary["bpp"] = 8 * latent_bytes / (h * w)
        summary["compression_ratio"] = raster.bits_per_pixel / summary["bpp"]
    return summary


def decode_latent(latent: str | Path, output: str | Path, *, checkpoint: str | Path | None = None,
                  tile: int = DEFAULT_TILE, halo: int | None = None, batch_size: int = 4,
                  allow_other_checkpoint: bool = False, progress: bool = True) -> dict[str, Any]:
    """Decode a latent GeoTIFF back to the scene in its units and size, in halo tiles."""
    from sar_jax.inference import run as inference

    _check_args(tile, halo, batch_size, "float32")
    with LatentRaster(latent) as lat:
        info = lat.info
        params = info["preprocessing_params"]
        out_path = check_output_path(output, params["mode"])
        run = inference.load_run(checkpoint or info["checkpoint"], info.get("which", "best"))
        if run.config["model"] != info["model_config"]:
            raise SarJaxError(f"latent {latent}: encoded by a model with config {info['model_config']}, not "
                              f"{run.run_dir}'s {run.config['model']}")
        if fingerprint(run.variables) != info["checkpoint_fingerprint"] and not allow_other_checkpoint:
            raise SarJaxError(f"latent {latent}: encoded by checkpoint {info['checkpoint_fingerprint']} but "
                              f"{run.run_dir} ({run.which}) is {fingerprint(run.variables)}; its decoder would give a "
                              "different image (pass --allow-other-checkpoint to decode with it anyway)")
        h, w = info["scene_shape"]
        grid = TileGrid.create(h, w, tile, default_halo(run.config["model"]) if halo is None else halo)
        if lat.shape[:2] != (grid.rows.padded // 16, grid.cols.padded // 16):
            raise SarJaxError(f"latent {latent}: {lat.shape[0]} x {lat.shape[1]} does not match its scene size "
                              f"{h} x {w} (expected {grid.rows.padded // 16} x {grid.cols.padded // 16})")
        writer = SceneWriter(out_path, (h, w), output_dtype(params["mode"]), crs=lat.crs,
                             transform=None if lat.transform is None else lat.transform @ lat.transform.scale(1 / 16))
        decode = inference.decode_fn(run.model)
        t0 = time.perf_counter()
        path = write_decoded(grid, lat.read_rows, lambda batch: decode(run.variables, batch), batch_size, writer,
                             lambda r0, b: writer.write(r0, to_units(b[..., 0], params)), progress)
    return {"output": str(path), "shape": [h, w], "units": params["mode"], "tiles": grid.num_tiles,
            "seconds": time.perf_counter() - t0}


def write_decoded(grid: TileGrid, read_rows: Callable[[int, int], np.ndarray], decode: Callable[[np.ndarray], Any],
                  batch_size: int, writer: SceneWriter, write_rows: Callable[[int, np.ndarray], None],
                  progress: bool) -> Path:
    """Decode a latent (``read_rows(r0, n)``: its rows in latent cells) window by window, hand the scene's
    rows to ``write_rows`` and commit ``writer`` (aborted, nothing left, on any error)."""
    images = TileRows(grid, write_rows)
    bar = progress_bar(grid.num_tiles, progress, "decode")
    try:
        codes = window_tiles(grid, lambda s, n: read_rows(s // GRID, n // GRID), scale=GRID)
        for (i, j), (x_hat,) in batched_apply(codes, decode, batch_size):
            images.add(i, j, x_hat)
            bar.update(1)
        bar.close()
        return writer.commit()
    except BaseException:
        bar.close()
        writer.abort()
        raise


# --------------------------------------------------------------------------- many scenes


def list_scenes(spec: str) -> list[Path]:
    """A file, the supported files in a folder, or those matching a glob pattern (sorted)."""
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(spec, recursive=True)
                       if Path(f).is_file() and Path(f).suffix.lower() in SUPPORTED_EXTENSIONS)
        if not files:
            raise SarJaxError(f"--input {spec}: no SAR files match ({', '.join(SUPPORTED_EXTENSIONS)})")
        return files
    return list_sar_files(spec)


def shard(scenes: list[Path], num_processes: int | None, process_id: int | None) -> tuple[list[Path], int, int]:
    """Every ``num_processes``-th scene from ``process_id`` (:func:`sar_jax.core.cli.process_share`)."""
    i, n = process_share(num_processes, process_id)
    return scenes[i::n], n, i


def reconstruct_many(checkpoint: str | Path, inputs: list[Path], out_dir: Path, *, latent_dir: Path | None,
                     which: str = "best", **kwargs: Any) -> list[dict[str, Any]]:
    """Reconstruct each scene into ``out_dir`` (skipping finished ones); one failure does not stop the rest."""
    from sar_jax.inference import run as inference

    for folder, flag in ((out_dir, "--output"), (latent_dir, "--save-latent-dir")):
        if folder is None:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SarJaxError(f"{flag} {folder}: cannot create the folder ({exc.strerror})") from None
        if not os.access(folder, os.W_OK):
            raise SarJaxError(f"{flag} {folder}: folder is not writable")
    run = inference.load_run(checkpoint, which)
    rows = []
    for scene in inputs:
        out = out_dir / output_name(scene)
        suffix = ".sarc" if run.config["model"]["kind"] in CODEC_KINDS else ".latent.tif"
        latent = latent_dir / f"{scene.stem}{suffix}" if latent_dir is not None else None
        if out.exists() and (latent is None or latent.exists()):
            rows.append({"input": str(scene), "status": "skipped (done)", "output": str(out)})
            continue
        try:
            summary = reconstruct_scene(run, scene, out, save_latent=latent, **kwargs)
            rows.append({**summary, "status": "ok"})
        except SarJaxError as exc:
            message = rename_params(str(exc), band="--band")
            print(f"error: {message}", file=sys.stderr, flush=True)
            rows.append({"input": str(scene), "status": "FAILED", "error": message})
    return rows


def setup_args() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m sar_jax.reconstruct", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="sar_jax run directory (its best checkpoint)")
    parser.add_argument("--input", default=None,
                        help="SAR scene (.tif/.tiff, .npy, .png/.jpg), a folder of them or a glob pattern")
    parser.add_argument("--output", required=True,
                        help="output file (.tif/.tiff, .npy, .png for 8-bit), or a folder for several scenes")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help=f"output tile size, a multiple of 16 (default {DEFAULT_TILE})")
    parser.add_argument("--halo", type=int, default=None,
                        help="context around each tile in px, a multiple of 16 (default: the model's dependency "
                             "radius rounded up to 16; 64 for 5x5 kernels)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per model call (default 4)")
    parser.add_argument("--save-latent", default=None, metavar="Z.tif|Z.sarc",
                        help="also write the latent: one GeoTIFF (baseline) or an entropy-coded .sarc bitstream "
                             "(model.kind factorized / hyperprior)")
    parser.add_argument("--save-latent-dir", default=None, metavar="DIR",
                        help="folder mode: write each scene's latent as DIR/<name>.latent.tif (or <name>.sarc)")
    parser.add_argument("--latent-dtype", default="float16", choices=LATENT_DTYPES,
                        help="stored latent precision (default float16; int8 = per-band scale/offset)")
    parser.add_argument("--from-latent", default=None, metavar="Z.tif|Z.sarc",
                        help="decode a latent GeoTIFF or a .sarc bitstream instead")
    parser.add_argument("--allow-other-checkpoint", action="store_true",
                        help="--from-latent: decode with a checkpoint other than the one that encoded it")
    add_input_units_args(parser, "--input")
    parser.add_argument("--which", default="best", choices=("best", "latest"), help="checkpoint to use")
    parser.add_argument("--band", type=int, default=None, help="band of a multi-band raster")
    parser.add_argument("--num-processes", type=int, default=None,
                        help="split the scenes over N processes (default: SLURM_ARRAY_TASK_COUNT, else 1)")
    parser.add_argument("--process-id", type=int, default=None,
                        help="this process's share, 0..N-1 (default: SLURM_ARRAY_TASK_ID, else 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_version_arg(parser)
    add_examples(parser, "python -m sar_jax.reconstruct --checkpoint runs/quickstart-20260101-120000 "
                         "--input scene.tif --output scene_rec.tif --save-latent scene.latent.tif")
    return parser


@flag_names(band="--band")
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (errors name this command's flags: the reader's ``band`` is ``--band`` here)."""
    return _main(setup_args().parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    progress = not args.quiet
    if args.from_latent:
        if args.input or args.save_latent or args.save_latent_dir:
            raise SarJaxError("--from-latent decodes a latent file: do not give --input or --save-latent(-dir)")
        if Path(args.from_latent).suffix.lower() == ".sarc":
            s = decode_bitstream(args.from_latent, args.output, checkpoint=args.checkpoint, tile=args.tile,
                                 halo=args.halo, batch_size=args.batch_size, progress=progress)
        else:
            s = decode_latent(args.from_latent, args.output, checkpoint=args.checkpoint, tile=args.tile,
                              halo=args.halo, batch_size=args.batch_size,
                              allow_other_checkpoint=args.allow_other_checkpoint, progress=progress)
        print(f"wrote {s['output']}: {s['shape'][0]} x {s['shape'][1]} {s['units']}, {count(s['tiles'], 'tile')}, "
              f"{s['seconds']:.1f}s")
        return 0
    if not args.input or not args.checkpoint:
        raise SarJaxError("give --checkpoint RUN_DIR and --input SCENE (or --from-latent Z.tif)")
    common = {"tile": args.tile, "halo": args.halo, "batch_size": args.batch_size, "latent_dtype": args.latent_dtype,
              "units": None if args.units == "auto" else args.units, "band": args.band,
              "allow_clipping": args.allow_clipping, "progress": progress}
    single = Path(args.input).is_file() and not Path(args.output).is_dir()
    if single:
        if args.save_latent_dir:
            raise SarJaxError("--save-latent-dir is for a folder or glob --input; give --save-latent Z.tif")
        from sar_jax.inference import run as inference

        run = inference.load_run(args.checkpoint, args.which)
        print_summary(reconstruct_scene(run, args.input, args.output, save_latent=args.save_latent, **common))
        return 0
    if args.save_latent:
        raise SarJaxError("--save-latent names one file; with a folder or glob --input use --save-latent-dir DIR")
    scenes, n, i = shard(list_scenes(args.input), args.num_processes, args.process_id)
    rows = reconstruct_many(args.checkpoint, scenes, Path(args.output), which=args.which,
                            latent_dir=Path(args.save_latent_dir) if args.save_latent_dir else None, **common)
    print(f"process {i} of {n}: {len(rows)} scenes")
    print(summary_table(rows))
    failed = [r for r in rows if r["status"] == "FAILED"]
    if failed:
        print(f"{len(failed)} of {len(rows)} scenes failed", file=sys.stderr)
    return 1 if failed else 0
