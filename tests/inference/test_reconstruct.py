"""python -m sar_jax.reconstruct: units and formats kept, GeoTIFF georeferencing, latent GeoTIFFs
(exact, int8, fingerprint), no-data, clipping, many scenes, write failures."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import Affine

from sar_jax.core.cli import run_main
from sar_jax.data.preprocess import log_bias_db, normalize
from sar_jax.inference import reconstruct, scene_io
from sar_jax.inference import run as inference
from sar_jax.inference.latent import fingerprint

TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)


def _scene(shape, seed=0, looks=4.0):
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(0, 1, (shape[0] // 8 + 2, shape[1] // 8 + 2)))
    base = np.kron(base, np.ones((8, 8)))[:shape[0], :shape[1]]
    return (0.25 * base * rng.gamma(looks, 1 / looks, shape)).astype(np.float32)  # inside the tiny runs' clip range


def _geotiff(path, data, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype=data.dtype.name, crs=CRS.from_epsg(32633), transform=TRANSFORM, nodata=nodata) as ds:
        ds.write(data, 1)
        ds.update_tags(ACQUISITION="2020-01-01", UNITS="intensity")


def _run(args):
    return run_main(reconstruct.main, args + ["--quiet"])


def _params(run_dir, mode=None):
    from sar_jax.training.checkpointing import read_metadata

    p = read_metadata(run_dir)["preprocessing_params"]
    return dict(p, mode=mode or p["mode"])


def test_ragged_size_keeps_shape_and_units(intensity_run, tmp_path, capsys):
    shape = (100, 237)
    np.save(tmp_path / "in.npy", _scene(shape))
    assert _run(["--checkpoint", str(intensity_run), "--input", str(tmp_path / "in.npy"), "--output",
                 str(tmp_path / "out.npy"), "--tile", "64", "--batch-size", "3", "--units", "intensity"]) == 0
    out = np.load(tmp_path / "out.npy")
    assert out.shape == shape and out.dtype == np.float32 and np.isfinite(out).all()
    p = _params(intensity_run)
    lo, hi = 10 ** (p["vmin"] / 10), 10 ** (p["vmax"] / 10)
    assert out.min() >= lo * (1 - 1e-4) and out.max() <= hi * (1 + 1e-4)  # intensity, inside the clip range
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in.npy", "out.npy"]  # no temp files left
    printed = capsys.readouterr().out
    assert "64 px halo" in printed and "mean ratio" in printed


def test_amplitude_in_amplitude_out(intensity_run, tmp_path):
    # intensity and amplitude share the dB scale: reconstructing sqrt(I) as amplitude gives sqrt(recon(I))
    scene = _scene((96, 130), seed=1)
    np.save(tmp_path / "i.npy", scene)
    np.save(tmp_path / "a.npy", np.sqrt(scene))
    common = ["--checkpoint", str(intensity_run)]
    assert _run(common + ["--input", str(tmp_path / "i.npy"), "--output", str(tmp_path / "i_out.npy"),
                          "--units", "intensity"]) == 0
    assert _run(common + ["--input", str(tmp_path / "a.npy"), "--output", str(tmp_path / "a_out.npy"),
                          "--units", "amplitude"]) == 0
    # the same dB reconstruction, each with its own unit's log-bias correction (measured on the training split)
    bias = _params(intensity_run)["log_bias_db_by_units"]
    factor = 10 ** ((bias["amplitude"] - bias["intensity"]) / 10)  # both in dB
    assert bias["intensity"] > 0 and factor != 1.0
    np.testing.assert_allclose(np.load(tmp_path / "a_out.npy") ** 2, factor * np.load(tmp_path / "i_out.npy"),
                               rtol=1e-3)


def test_geotiff_georeferencing_goes_to_the_output_and_scaled_to_the_latent(intensity_run, tmp_path):
    _geotiff(tmp_path / "in.tif", _scene((70, 90), seed=2))
    assert _run(["--checkpoint", str(intensity_run), "--input", str(tmp_path / "in.tif"), "--output",
                 str(tmp_path / "out.tif"), "--save-latent", str(tmp_path / "z.tif")]) == 0
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.crs == CRS.from_epsg(32633) and ds.transform == TRANSFORM
        assert (ds.height, ds.width, ds.dtypes[0]) == (70, 90, "float32") and ds.tags()["ACQUISITION"] == "2020-01-01"
    run = inference.load_run(intensity_run)
    with rasterio.open(tmp_path / "z.tif") as ds:  # rasterio alone: any GDAL tool reads it
        assert (ds.count, ds.height, ds.width) == (4, 5, 6)
        assert ds.crs == CRS.from_epsg(32633) and ds.transform == TRANSFORM * Affine.scale(16)
        tags = ds.tags()
    assert json.loads(tags["PREPROCESSING_PARAMS"]) == _params(intensity_run)
    assert tags["UNITS"] == "intensity" and json.loads(tags["MODEL_CONFIG"]) == run.config["model"]
    assert tags["CHECKPOINT_FINGERPRINT"] == fingerprint(run.variables)


def test_log8_png_and_uint8_outputs(log8_run, tmp_path):
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(110, 35, (150, 210)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    np.save(tmp_path / "in.npy", img)
    for src, dst, tile in (("in.png", "out.png", 64), ("in.png", "out.tif", 64), ("in.npy", "out.npy", 64),
                           ("in.png", "whole.png", 1024)):
        assert _run(["--checkpoint", str(log8_run), "--input", str(tmp_path / src), "--output", str(tmp_path / dst),
                     "--tile", str(tile), "--allow-clipping"]) == 0
    png = np.array(Image.open(tmp_path / "out.png"))
    whole = np.array(Image.open(tmp_path / "whole.png")).astype(int)
    assert np.abs(png.astype(int) - whole).max() <= 1  # tiled == one window, up to a rounding tie
    assert png.dtype == np.uint8 and png.shape == img.shape
    with rasterio.open(tmp_path / "out.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), png)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), png)


def test_latents_decode_to_the_direct_reconstruction_at_their_precision(intensity_run, log8_run, tmp_path, capsys):
    shape = (320, 400)  # a latent of 20 x 25 x 4: large enough for its bytes to dominate the file's header
    np.save(tmp_path / "in.npy", _scene(shape, seed=4))
    common = ["--checkpoint", str(intensity_run), "--input", str(tmp_path / "in.npy"), "--tile", "128",
              "--units", "intensity"]
    for dt in ("float32", "float16", "int8"):
        assert _run(common + ["--output", str(tmp_path / f"enc_{dt}.npy"),
                              "--save-latent", str(tmp_path / f"z_{dt}.tif"), "--latent-dtype", dt]) == 0
        size = (tmp_path / f"z_{dt}.tif").stat().st_size
        assert f"{size} bytes, {8 * size / (shape[0] * shape[1]):.4f} bits per input pixel" in capsys.readouterr().out
        # decoding needs no --checkpoint: the latent file records it
        assert _run(["--from-latent", str(tmp_path / f"z_{dt}.tif"), "--output", str(tmp_path / f"dec_{dt}.npy"),
                     "--tile", "64"]) == 0
    sizes = {dt: (tmp_path / f"z_{dt}.tif").stat().st_size for dt in ("float32", "float16", "int8")}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    p = _params(intensity_run)
    unbias = 10 ** (-log_bias_db(p) / 10)  # back to the model's [0, 1] output: undo the log-bias correction
    norm = lambda name: normalize(np.load(tmp_path / name) * unbias, p)  # noqa: E731
    direct = norm("enc_float32.npy")
    np.testing.assert_allclose(norm("dec_float32.npy"), direct, atol=1e-5)
    run = inference.load_run(intensity_run)
    decode = inference.decode_fn(run.model)
    for dt in ("float16", "int8"):
        with rasterio.open(tmp_path / f"z_{dt}.tif") as ds:  # GDAL's scale/offset give the dequantized latent
            z = np.moveaxis(ds.read().astype(np.float64) * np.array(ds.scales)[:, None, None]
                            + np.array(ds.offsets)[:, None, None], 0, -1).astype(np.float32)
        whole = np.asarray(decode(run.variables, z[None]))[0, :shape[0], :shape[1], 0]
        np.testing.assert_allclose(norm(f"dec_{dt}.npy"), whole, atol=1e-5)  # exact to the stored precision
        assert 0 < np.abs(norm(f"dec_{dt}.npy") - direct).max() < 0.1
    # another checkpoint's decoder is refused (one line), unless asked for
    out = str(tmp_path / "other.npy")
    capsys.readouterr()
    assert _run(["--from-latent", str(tmp_path / "z_int8.tif"), "--output", out, "--checkpoint", str(log8_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allow-other-checkpoint" in err[0] and not (tmp_path / "other.npy").exists()
    assert _run(["--from-latent", str(tmp_path / "z_int8.tif"), "--output", out, "--checkpoint", str(log8_run),
                 "--allow-other-checkpoint"]) == 0


def test_no_data_is_written_back_and_changes_nothing_beyond_the_models_reach(random_run, tmp_path):
    scene = _scene((200, 230), seed=6)
    holed = scene.copy()
    holed[80:120, 100:150] = -9999.0
    _geotiff(tmp_path / "full.tif", scene)
    _geotiff(tmp_path / "holed.tif", holed, nodata=-9999.0)
    for name in ("full", "holed"):
        s = reconstruct.reconstruct_scene(random_run, tmp_path / f"{name}.tif", tmp_path / f"{name}_out.tif", tile=64,
                                          progress=False)
    assert s["invalid_pixels"] == 40 * 50
    with rasterio.open(tmp_path / "holed_out.tif") as ds:
        holed_out, nodata = ds.read(1), ds.nodata
    with rasterio.open(tmp_path / "full_out.tif") as ds:
        full_out = ds.read(1)
    assert nodata == -9999.0 and (holed_out[80:120, 100:150] == -9999.0).all()
    far = np.ones(scene.shape, bool)
    far[80 - 60:120 + 60, 100 - 60:150 + 60] = False  # the dependency radius is 60 px
    p = random_run.preprocessing_params
    np.testing.assert_allclose(normalize(holed_out[far], p), normalize(full_out[far], p), atol=1e-5)
    near = ~far & (holed_out != -9999.0)
    assert np.abs(holed_out[near] - full_out[near]).max() > 0  # the hole is seen within reach (the test can fail)


def test_nan_no_data_in_float_npy_comes_back_as_nan(random_run, tmp_path):
    scene = _scene((64, 80), seed=7)
    scene[:10] = np.nan
    np.save(tmp_path / "in.npy", scene)
    with pytest.warns(UserWarning, match="800 no-data pixels"):
        reconstruct.reconstruct_scene(random_run, tmp_path / "in.npy", tmp_path / "out.npy", units="intensity",
                                      progress=False)
    out = np.load(tmp_path / "out.npy")
    assert np.isnan(out[:10]).all() and np.isfinite(out[10:]).all()


def test_outputs_carry_the_log_bias_correction_and_both_mean_ratios(random_run, tmp_path):
    import types

    np.save(tmp_path / "in.npy", _scene((48, 64), seed=8))
    corrected = types.SimpleNamespace(**{**vars(random_run), "preprocessing_params": dict(
        random_run.preprocessing_params, log_bias_db=2.5, log_bias_db_by_units={"intensity": 2.5, "amplitude": 1.2})})
    plain = reconstruct.reconstruct_scene(random_run, tmp_path / "in.npy", tmp_path / "plain.npy", units="intensity",
                                          progress=False)
    s = reconstruct.reconstruct_scene(corrected, tmp_path / "in.npy", tmp_path / "out.npy", units="intensity",
                                      progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), 10 ** 0.25 * np.load(tmp_path / "plain.npy"), rtol=1e-5)
    assert s["log_bias_db"] == 2.5 and plain["log_bias_db"] == 0.0
    assert s["mean_ratio"] == pytest.approx(10 ** 0.25 * s["mean_ratio_uncorrected"], rel=1e-5)
    assert s["mean_ratio_uncorrected"] == pytest.approx(plain["mean_ratio"], rel=1e-5)


def test_db_input_is_the_same_reconstruction_in_db(random_run, tmp_path):
    x = _scene((48, 64), seed=9)
    np.save(tmp_path / "i.npy", x)
    np.save(tmp_path / "d.npy", 10 * np.log10(x))  # negative values: fine in dB
    a = reconstruct.reconstruct_scene(random_run, tmp_path / "i.npy", tmp_path / "i_out.npy", units="intensity",
                                      progress=False)
    b = reconstruct.reconstruct_scene(random_run, tmp_path / "d.npy", tmp_path / "d_out.npy", units="db",
                                      progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "d_out.npy"), 10 * np.log10(np.load(tmp_path / "i_out.npy")),
                               atol=1e-4)
    assert b["units"] == "db" and b["mean_ratio"] == pytest.approx(a["mean_ratio"], rel=1e-5)  # in intensity


def test_calibration_mismatch_is_refused_with_both_ranges(random_run, tmp_path):
    np.save(tmp_path / "hot.npy", _scene((64, 64)) * 1e4)  # +40 dB: most pixels above the clip range
    with pytest.raises(Exception, match=r"clip range \[-20.0, 15.0\] dB \(the input spans \[.*\] dB.*--allow-clipping"):
        reconstruct.reconstruct_scene(random_run, tmp_path / "hot.npy", tmp_path / "out.npy", units="intensity",
                                      progress=False)
    assert not (tmp_path / "out.npy").exists()
    with pytest.warns(UserWarning, match="outside the checkpoint's clip range"):
        s = reconstruct.reconstruct_scene(random_run, tmp_path / "hot.npy", tmp_path / "out.npy", allow_clipping=True,
                                          units="intensity", progress=False)
    assert s["clipped_fraction"] > 0.5


def test_folder_mode_skips_finished_scenes_and_reports_failures(intensity_run, tmp_path, capsys):
    src = tmp_path / "scenes"
    src.mkdir()
    for i in range(3):
        np.save(src / f"s{i}.npy", _scene((48, 64 + 16 * i), seed=i))
    (src / "broken.npy").write_bytes(b"not an npy file")
    out, lat = tmp_path / "out", tmp_path / "lat"
    args = ["--checkpoint", str(intensity_run), "--input", str(src), "--output", str(out), "--units", "intensity",
            "--save-latent-dir", str(lat)]
    assert _run(args) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["s0.npy", "s1.npy", "s2.npy"]
    assert sorted(p.name for p in lat.iterdir()) == ["s0.latent.tif", "s1.latent.tif", "s2.latent.tif"]
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "broken.npy" in errors[0]
    table = captured.out
    assert "| broken.npy | FAILED |" in table and table.count("| ok |") == 3
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "s1.npy").unlink()  # as if interrupted before s1 finished
    assert _run(args[:-2] + ["--save-latent-dir", str(lat)]) == 1
    table = capsys.readouterr().out
    assert table.count("skipped (done)") == 2 and table.count("| ok |") == 1
    assert all((out / n).stat().st_mtime_ns == t for n, t in mtimes.items() if n != "s1.npy")
    # a glob works the same way
    assert _run(["--checkpoint", str(intensity_run), "--input", str(src / "s[01].npy"), "--output",
                 str(tmp_path / "globbed"), "--units", "intensity"]) == 0
    assert sorted(p.name for p in (tmp_path / "globbed").iterdir()) == ["s0.npy", "s1.npy"]


def test_sharding_covers_every_scene_once(monkeypatch):
    scenes = [f"s{i}" for i in range(10)]
    shares = [reconstruct.shard(scenes, 3, i)[0] for i in range(3)]
    assert sorted(sum(shares, [])) == sorted(scenes) and all(len(s) in (3, 4) for s in shares)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert reconstruct.shard(scenes, None, None) == (shares[2], 3, 2)
    with pytest.raises(Exception, match="--process-id 3 of --num-processes 3"):
        reconstruct.shard(scenes, 3, 3)


@pytest.mark.parametrize("failure", ["unwritable", "disk_full"])
def test_write_failures_are_one_line_and_leave_no_file(random_run, tmp_path, monkeypatch, capsys, failure):
    np.save(tmp_path / "in.npy", _scene((40, 50)))
    real_open = open

    class FullFile:
        def __init__(self, path, mode):
            self.f = real_open(path, mode)

        def write(self, data):
            if len(data) > 1024:  # the header fits, the pixels do not
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def close(self):
            self.f.close()

    def fake_open(path, mode="r", *a, **k):
        if failure == "unwritable":
            raise PermissionError(errno.EACCES, "Permission denied")
        return FullFile(path, mode)

    monkeypatch.setattr(scene_io, "open", fake_open, raising=False)
    monkeypatch.setattr(inference, "load_run", lambda *a, **k: random_run)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _run(["--checkpoint", "x", "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "out.npy"),
                 "--units", "intensity"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    reason = "Permission denied" if failure == "unwritable" else "No space left on device"
    assert len(err) == 1 and err[0] == f"error: output {tmp_path / 'out.npy'}: cannot write ({reason})", err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("case,match", [
    ("missing_checkpoint", "no such run directory"),
    ("missing_input", "no such file"),
    ("bad_ext", "unsupported extension"),
    ("tile", "multiple of 16"),
    ("halo", "halo 8"),
    ("png_for_float", "PNG holds 8-bit"),
    ("log8_into_linear", "log8"),
    ("bad_latent", "not a sar_jax latent raster"),
    ("missing_folder", "does not exist"),
    ("band", "choose one with --band 0..2"),
    ("no_units", "units"),
    ("negative", "negative values"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(intensity_run, tmp_path, capsys, case, match):
    np.save(tmp_path / "in.npy", _scene((40, 50)))
    np.save(tmp_path / "u8.npy", np.zeros((40, 50), np.uint8))
    _geotiff(tmp_path / "plain.tif", _scene((20, 20)))
    np.save(tmp_path / "rgb.npy", np.ones((3, 40, 50), np.float32))
    np.save(tmp_path / "neg.npy", -_scene((40, 50)))
    ck, inp, out = str(intensity_run), str(tmp_path / "in.npy"), str(tmp_path / "out.npy")
    units = ["--units", "intensity"]
    args = {
        "missing_checkpoint": ["--checkpoint", str(tmp_path / "nope"), "--input", inp, "--output", out],
        "missing_input": ["--checkpoint", ck, "--input", str(tmp_path / "nope.npy"), "--output", out],
        "bad_ext": ["--checkpoint", ck, "--input", inp, "--output", str(tmp_path / "out.jpg")],
        "tile": ["--checkpoint", ck, "--input", inp, "--output", out, "--tile", "100"],
        "halo": ["--checkpoint", ck, "--input", inp, "--output", out, "--halo", "8"],
        "png_for_float": ["--checkpoint", ck, "--input", inp, "--output", str(tmp_path / "out.png")],
        "log8_into_linear": ["--checkpoint", ck, "--input", str(tmp_path / "u8.npy"), "--output", out],
        "bad_latent": ["--from-latent", str(tmp_path / "plain.tif"), "--output", out],
        "missing_folder": ["--checkpoint", ck, "--input", inp, "--output", str(tmp_path / "no" / "out.npy")],
        "band": ["--checkpoint", ck, "--input", str(tmp_path / "rgb.npy"), "--output", out],
        "no_units": ["--checkpoint", ck, "--input", inp, "--output", out],
        "negative": ["--checkpoint", ck, "--input", str(tmp_path / "neg.npy"), "--output", out],
    }[case]
    if case not in ("bad_latent", "log8_into_linear", "no_units"):
        args += units
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing (half-)written
