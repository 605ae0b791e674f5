"""Whole scenes through a learned codec and back: ``.sarc`` bitstreams (:mod:`sar_jax.codec.container`).

    python -m sar_jax.reconstruct --checkpoint RUN --input SCENE --output OUT --save-latent SCENE.sarc
    python -m sar_jax.reconstruct --from-latent SCENE.sarc --output OUT [--checkpoint RUN]

Encoding runs the analysis transform g_a over halo tiles (exactly the whole-scene pass, as
:mod:`sar_jax.inference.tiling` proves for the autoencoder, whose g_a / g_s have the same layers),
entropy-codes the assembled latent (:class:`~sar_jax.inference.entropy_codec.LearnedCodec`) and
writes the header (format, model kind and config, checkpoint fingerprint and coding-table hashes,
scene size, preprocessing params and units, CRS, transform, no-data value, the input's tags) with the streams
``y`` (and ``z``) and, where the scene has no-data pixels, ``valid`` (the mask, bit-packed and
DEFLATE-compressed: counted in the rate). Decoding reads the streams back, runs the synthesis
transform g_s over halo tiles and writes the scene in its units with its georeferencing, no-data
pixels as no-data. The encoder side's reconstruction IS this decoder's output, so the two agree
bit for bit.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sar_jax.codec.container import read_sarc, write_sarc
from sar_jax.core.errors import SarJaxError
from sar_jax.inference.scene_io import SceneWriter, check_output_path, check_writable
from sar_jax.inference.tiling import GRID, TileGrid, TileRows, batched_apply, default_halo, window_tiles

BITSTREAM_FORMAT = "sar_jax-sarc-v1"


def encode_scene(run: Any, input_path: str | Path, sarc_path: str | Path, *, tile: int, halo: int | None,
                 batch_size: int, units: str | None, band: int | None, allow_clipping: bool,
                 progress: bool) -> dict[str, Any]:
    """Code one scene into ``sarc_path`` (written atomically); returns its summary."""
    from sar_jax.inference import run as inference
    from sar_jax.inference.entropy_codec import LearnedCodec
    from sar_jax.inference.reconstruct import open_scene, progress_bar, read_normalized

    path = Path(sarc_path)
    if path.suffix.lower() != ".sarc":
        raise SarJaxError(f"--save-latent {path}: model.kind {run.config['model']['kind']!r} writes an entropy-coded "
                          "bitstream: give a .sarc file name")
    check_writable(path, "bitstream")
    codec = LearnedCodec(run)
    raster, params, fill = open_scene(run, input_path, units, band, allow_clipping)
    h, w = raster.height, raster.width
    halo = default_halo(run.config["model"]) if halo is None else halo
    grid = TileGrid.create(h, w, tile, halo)
    ph, pw = grid.padded_shape
    cells = (ph // GRID, pw // GRID)
    y = np.zeros((*cells, run.config["model"]["M"]), np.float32)
    valid = np.zeros((h, w), bool)
    lo, hi = inference.clip_range(params)
    counted = {"rows": 0, "clipped": 0}

    def read_band(s: int, n: int) -> np.ndarray:
        x, values, ok = read_normalized(raster, params, fill, pw, s, n)
        first, end = max(s, counted["rows"]), min(s + n, h)
        if end > first:  # scene rows seen for the first time: their validity and clipped pixels
            new_ok, new = ok[first - s:end - s, :w], values[first - s:end - s, :w]
            valid[first:end] = new_ok
            counted["clipped"] += int(((new < lo) | (new > hi))[new_ok].sum())
            counted["rows"] = end
        return x

    latents = TileRows(grid, lambda r0, b: y.__setitem__(slice(r0, r0 + len(b)), b), scale=GRID, height=cells[0],
                       width=cells[1])
    t0 = time.perf_counter()
    bar = progress_bar(grid.num_tiles, progress, "encode")
    for (i, j), (tile_y,) in batched_apply(window_tiles(grid, read_band), codec.analysis, batch_size):
        latents.add(i, j, tile_y)
        bar.update(1)
    bar.close()
    coded = codec.encode(y)
    streams = dict(coded.streams)
    if not valid.all():
        streams["valid"] = zlib.compress(np.packbits(valid).tobytes(), 9)
    nodata = raster.nodata if raster.nodata is not None else (None if params["mode"] == "log8" else float("nan"))
    header = {"format": BITSTREAM_FORMAT, "model_kind": codec.kind, "model_config": run.config["model"],
              "checkpoint_fingerprint": codec.fingerprint, "checkpoint": str(Path(run.run_dir).resolve()),
              "which": run.which, "coding_tables": codec.table_hashes(), "scene_shape": [h, w],
              "latent_shape": list(cells), "preprocessing_params": params, "units": params["mode"],
              "crs": raster.crs.to_wkt() if raster.crs else None,
              "transform": list(raster.transform)[:6] if raster.transform is not None else None,
              "tags": dict(raster.tags), "nodata": None if nodata is None or np.isnan(nodata) else float(nodata),
              "nodata_nan": nodata is not None and bool(np.isnan(nodata)), "input": str(input_path),
              "input_dtype": raster.source_dtype,
              "estimated_bits": coded.estimated_bits}
    nbytes = write_sarc(path, header, streams)
    return {"bitstream": str(path), "bitstream_bytes": nbytes, "bpp": 8 * nbytes / (h * w),
            "estimated_bpp": coded.estimated_bits / (h * w), "stream_bytes": {k: len(v) for k, v in streams.items()},
            "input_bits_per_pixel": raster.bits_per_pixel, "compression_ratio": raster.bits_per_pixel * h * w
            / (8 * nbytes), "encode_seconds": time.perf_counter() - t0, "tile": tile, "halo": halo,
            "compute_ratio": grid.computed_pixels() / (h * w), "invalid_pixels": int(valid.size - valid.sum()),
            "clipped_fraction": counted["clipped"] / max(1, int(valid.sum())),
            "phase_dropped": raster.phase_dropped}


def decode_bitstream(sarc_path: str | Path, output: str | Path, *, checkpoint: str | Path | None = None,
                     tile: int, halo: int | None, batch_size: int, progress: bool,
                     run: Any = None) -> dict[str, Any]:
    """Decode a ``.sarc`` file into ``output`` (the scene in its units, georeferenced); returns a summary."""
    from rasterio.transform import Affine

    from sar_jax.inference import run as inference
    from sar_jax.inference.entropy_codec import LearnedCodec
    from sar_jax.inference.reconstruct import to_units, write_decoded

    header, streams = read_sarc(sarc_path)
    what = f"bitstream {sarc_path}"
    if header.get("format") != BITSTREAM_FORMAT:
        raise SarJaxError(f"{what}: not a sar_jax scene bitstream (format {header.get('format')!r}, expected "
                          f"{BITSTREAM_FORMAT!r})")
    params = header["preprocessing_params"]
    out_path = check_output_path(output, params["mode"])
    if run is None:
        run = inference.load_run(checkpoint or header["checkpoint"], header.get("which", "best"))
    if run.config["model"] != header["model_config"]:
        raise SarJaxError(f"{what}: coded by a model.kind {header['model_kind']!r} model with config "
                          f"{header['model_config']}, not {run.run_dir}'s {run.config['model']}")
    codec = LearnedCodec(run)
    if codec.fingerprint != header["checkpoint_fingerprint"]:
        raise SarJaxError(f"{what}: coded by checkpoint {header['checkpoint_fingerprint']} but {run.run_dir} "
                          f"({run.which}) is {codec.fingerprint}; decode it with the checkpoint that encoded it")
    codec.check_hashes(header["coding_tables"], what)
    h, w = header["scene_shape"]
    cells = tuple(header["latent_shape"])
    t0 = time.perf_counter()
    try:
        y_hat = codec.decode({k: streams[k] for k in codec.tables}, cells)
        valid = None
        if "valid" in streams:
            packed = zlib.decompress(streams["valid"])
            if len(packed) != -(-h * w // 8):
                raise ValueError(f"the no-data mask holds {len(packed)} bytes, expected {-(-h * w // 8)}")
            valid = np.unpackbits(np.frombuffer(packed, np.uint8), count=h * w).reshape(h, w).astype(bool)
    except (KeyError, ValueError, zlib.error, SarJaxError) as exc:
        detail = f"missing stream {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:200]
        raise SarJaxError(f"{what}: cannot decode its streams ({detail})") from None
    grid = TileGrid.create(h, w, tile, default_halo(run.config["model"]) if halo is None else halo)
    dtype = np.dtype("uint8" if params["mode"] == "log8" else "float32")
    nodata = float("nan") if header.get("nodata_nan") else header.get("nodata")
    transform = Affine(*header["transform"]) if header.get("transform") else None
    writer = SceneWriter(out_path, (h, w), dtype, crs=header.get("crs"), transform=transform,
                         nodata=None if nodata is None else float(nodata),
                         tags=dict(header.get("tags") or {}, **({"UNITS": params["mode"]} if params["mode"] != "log8"
                                                                else {})))

    def write_rows(r0: int, block: np.ndarray) -> None:
        out = to_units(block[..., 0], params)
        if valid is not None and nodata is not None:
            out = np.where(valid[r0:r0 + len(out)], out, np.asarray(nodata, dtype))
        writer.write(r0, out)

    path = write_decoded(grid, lambda r0, n: y_hat[r0:r0 + n], codec.synthesis, batch_size, writer, write_rows,
                         progress)
    return {"output": str(path), "shape": [h, w], "units": params["mode"], "tiles": grid.num_tiles,
            "seconds": time.perf_counter() - t0}


def reconstruct_coded(run: Any, input_path: str | Path, output: str | Path, sarc_path: str | Path,
                      **kwargs: Any) -> dict[str, Any]:
    """Encode a scene into ``sarc_path`` and decode that file into ``output`` (both, or neither if this fails)."""
    summary = encode_scene(run, input_path, sarc_path, **kwargs)
    try:
        decoded = decode_bitstream(sarc_path, output, tile=kwargs["tile"], halo=kwargs["halo"],
                                   batch_size=kwargs["batch_size"], progress=kwargs["progress"], run=run)
    except BaseException:
        Path(sarc_path).unlink(missing_ok=True)
        raise
    return {"input": str(input_path), **decoded, **summary, "latent": summary["bitstream"],
            "latent_bytes": summary["bitstream_bytes"], "seconds": summary["encode_seconds"] + decoded["seconds"]}
