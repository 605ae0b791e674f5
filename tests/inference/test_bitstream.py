"""Scenes through the learned codecs' .sarc bitstreams and the U-Net through tiles (python -m sar_jax.reconstruct):
bit-exact file round trips, tiled == whole scene, the coder's own overhead over the likelihoods, georeferencing
and no-data kept, bad bitstreams and wrong kinds refused in one line with nothing written, several processes.

The checkpoints are untrained run directories (initialised, saved as the trainer saves them; one per kind for
the whole file): the codec's exactness does not depend on training, and g_a's last layer is scaled up so the
latents span several integers (escapes beyond the coding tables included).
"""

from __future__ import annotations

import math
import types
import zlib

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from sar_jax.codec.container import read_sarc
from sar_jax.core.cli import run_main
from sar_jax.inference import reconstruct

TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
SHAPE = (272, 300)  # > 256 px a side: --tile 128 cuts it into 2 x 2 windows (halo 64); one window otherwise
WHOLE = ["--tile", "304"]
#: A fixed intensity preprocessing whose range (-30 .. 60 dB) holds the float scenes and 16-bit DNs alike.
PARAMS = {"mode": "intensity", "vmin": -30.0, "vmax": 60.0, "floor": 1e-6, "percentiles": [1.0, 99.0],
          "log_bias_db": 1.0, "log_bias_db_by_units": {"intensity": 1.0, "amplitude": 0.5}}
SMALL = ["model.N=8", "model.M=8", "model.unet_features=4", "model.unet_depth=2"]
KINDS = {"factorized": ['model.kind="factorized"', 'loss.kind="rate_distortion"'],
         "hyperprior": ['model.kind="hyperprior"', 'loss.kind="rate_distortion"'],
         "unet": ['model.kind="unet"'], "baseline": []}


def _variables(kind, model_cfg, seed):
    """Initial weights from the PyTorch reference (no XLA compile), converted as ``sar_jax.convert`` does."""
    import torch

    from sar_jax.parity import convert, convert_codec, convert_unet
    from sar_torch_ref.models import FactorizedPrior, SARAutoencoder, ScaleHyperprior
    from sar_torch_ref.models.unet import UNet

    torch.manual_seed(seed)
    if kind == "baseline":
        return convert.torch_to_flax(SARAutoencoder(model_cfg).state_dict(), model_cfg)
    if kind == "unet":
        return convert_unet.torch_to_flax(UNet(model_cfg).state_dict(), model_cfg)
    model = (FactorizedPrior if kind == "factorized" else ScaleHyperprior)(model_cfg)
    return {"params": convert_codec.torch_to_flax(model.state_dict(), kind, model_cfg)["params"], "batch_stats": {}}


def _make_run(run_dir, kind, seed=0, gain=80.0):
    """An initialised ``kind`` run saved as the trainer saves one (the codecs' y scaled by ``gain``)."""
    import jax

    from sar_jax.core.config import load_config
    from sar_jax.core.rundir import prepare_run_dir
    from sar_jax.nn.registry import build_model
    from sar_jax.training import checkpointing
    from sar_jax.training.state import create_train_state

    config = load_config("tiny", SMALL + KINDS[kind])[0]
    variables = _variables(kind, config["model"], seed)
    if kind in ("factorized", "hyperprior"):
        variables["params"]["g_a"]["conv3"]["kernel"] = gain * variables["params"]["g_a"]["conv3"]["kernel"]
    state = create_train_state(build_model(config["model"]), config, jax.tree.map(jax.numpy.asarray, variables))
    meta = {"config": config, "preprocessing_params": PARAMS, "epoch": 1, "step": 1, "val_loss": 1.0,
            "best_val_loss": 1.0, "versions": checkpointing.library_versions(), "framework": "jax"}
    prepare_run_dir(run_dir, config, resume=False)
    manager = checkpointing.make_manager(run_dir)
    checkpointing.save(manager, 1, state, meta, 1.0)
    manager.close()
    return run_dir


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bitstream_runs")
    made = {kind: _make_run(root / kind, kind) for kind in KINDS}
    made["factorized_other"] = _make_run(root / "factorized_other", "factorized", seed=1)
    return made


def _scene(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(0, 1, (shape[0] // 8 + 2, shape[1] // 8 + 2)))
    base = np.kron(base, np.ones((8, 8)))[:shape[0], :shape[1]]
    return (0.25 * base * rng.gamma(4.0, 0.25, shape)).astype(np.float32)


def _margin(data):
    """Zero the first 12 columns and the last 9 rows (a GRD scene's no-data border)."""
    data = data.copy()
    data[:, :12] = 0
    data[-9:] = 0
    return data


def _geotiff(path, data, nodata=None, units="intensity"):
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype=data.dtype.name, crs=CRS.from_epsg(32633), transform=TRANSFORM, nodata=nodata) as ds:
        ds.write(data, 1)
        if units:
            ds.update_tags(UNITS=units)
        ds.update_tags(MISSION="S1A")
    return path


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.crs, ds.transform, ds.nodata, ds.tags()


def _run(args):
    return run_main(reconstruct.main, [*map(str, args), "--quiet"])


def _encode(run, scene, out, sarc, *extra):
    assert _run(["--checkpoint", run, "--input", scene, "--output", out, "--save-latent", sarc, *extra]) == 0


def _decode(sarc, out, *extra):
    assert _run(["--from-latent", sarc, "--output", out, *extra]) == 0


@pytest.fixture(scope="session")
def scene_tif(tmp_path_factory):
    """A float32 intensity GeoTIFF of SHAPE with a zero (no-data) margin and no nodata value."""
    return _geotiff(tmp_path_factory.mktemp("bitstream_scenes") / "scene.tif", _margin(_scene()))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_file_round_trip_is_bit_exact_and_tiles_change_no_byte(kind, runs, scene_tif, tmp_path):
    _encode(runs[kind], scene_tif, tmp_path / "enc.tif", tmp_path / "whole.sarc", *WHOLE)
    _encode(runs[kind], scene_tif, tmp_path / "enc_tiled.tif", tmp_path / "tiled.sarc", "--tile", "128")
    assert (tmp_path / "tiled.sarc").read_bytes() == (tmp_path / "whole.sarc").read_bytes()
    _decode(tmp_path / "whole.sarc", tmp_path / "dec.tif", "--tile", "128")
    encoded, decoded = _read(tmp_path / "enc.tif")[0], _read(tmp_path / "dec.tif")[0]
    assert np.array_equal(encoded, decoded, equal_nan=True)
    assert np.array_equal(_read(tmp_path / "enc_tiled.tif")[0], decoded, equal_nan=True)
    header, streams = read_sarc(tmp_path / "whole.sarc")
    assert header["model_kind"] == kind and header["scene_shape"] == list(SHAPE)
    assert header["latent_shape"] == [17, 19]  # 272 x 304 padded, / 16
    assert sorted(streams) == sorted(["y", "valid"] + (["z"] if kind == "hyperprior" else []))
    assert np.unique(decoded[np.isfinite(decoded)]).size > 1000  # not a constant image: the latent carries it


def _codec_run(run_dir, variables_fn):
    """A loaded run with its variables changed by ``variables_fn`` (LearnedCodec's view of a run)."""
    from sar_jax.inference.run import load_run

    run = load_run(run_dir)
    return types.SimpleNamespace(**{**vars(run), "variables": variables_fn(run.variables)}) if variables_fn else run


@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_coder_overhead_over_the_likelihoods(kind, runs, tmp_path):
    """Bytes of the streams vs sum(-log2 p) of the model's likelihoods, on a 32 x 32 x 8 latent drawn
    from the density it is coded with (the hyperprior's h_s made to predict scale 3 everywhere)."""
    import jax.numpy as jnp

    from sar_jax.inference.entropy_codec import LearnedCodec

    def constant_scales(variables):
        params = dict(variables["params"])
        conv2 = params["h_s"]["conv2"]
        params["h_s"] = {**params["h_s"], "conv2": {"kernel": jnp.zeros_like(conv2["kernel"]),
                                                    "bias": jnp.full_like(conv2["bias"], 3.0)}}
        return {**variables, "params": params}

    run = _codec_run(runs[kind], constant_scales if kind == "hyperprior" else None)
    run.run_dir = tmp_path  # the changed run's coding tables go here
    codec = LearnedCodec(run)
    rng = np.random.default_rng(1)
    y = (rng.normal(0, 3.0, (32, 32, 8)) + (codec.medians if kind == "factorized" else 0)).astype(np.float32)
    coded = codec.encode(y)
    real = 8 * coded.nbytes
    assert coded.estimated_bits > 8 * 32 * 32 * 2  # ~3 bits per element: a moderately sized latent
    assert abs(real - coded.estimated_bits) <= 0.02 * coded.estimated_bits + 8 * 8
    np.testing.assert_array_equal(codec.decode(coded.streams, coded.shape), coded.y_hat)
    # a hand-computed -log2 of the likelihoods of the values coded (y_hat, and z_hat for the hyperprior)
    if kind == "factorized":
        liks = [run.model.apply(run.variables, jnp.asarray(coded.y_hat)[None],
                                method=lambda m, v: m.entropy_bottleneck.likelihood(v))]
    else:
        z = np.asarray(run.model.apply(run.variables, jnp.asarray(y)[None], method="hyper_analysis"))
        z_hat = np.round(z - codec.medians) + codec.medians
        liks = [run.model.apply(run.variables, jnp.asarray(z_hat, jnp.float32),
                                method=lambda m, v: m.entropy_bottleneck.likelihood(v)),
                run.model.apply(run.variables, jnp.asarray(coded.y_hat)[None], jnp.full((1, 32, 32, 8), 3.0),
                                method=lambda m, v, s: m.gaussian_conditional.likelihood(v, s))]
    hand = sum(float(np.sum(-np.log2(np.asarray(p, np.float64)))) for p in liks)
    assert coded.estimated_bits == pytest.approx(hand, rel=1e-6)


@pytest.mark.parametrize("kind", ["factorized", "hyperprior"])
def test_estimated_bits_are_the_models_own_likelihoods_of_an_image(kind, runs):
    import jax.numpy as jnp

    from sar_jax.inference.entropy_codec import LearnedCodec
    from sar_jax.inference.run import load_run

    run = load_run(runs[kind])
    codec = LearnedCodec(run)
    x = np.clip(_scene((128, 128)) / 4, 0, 1)[None, :, :, None]  # 128: a multiple of the hyperprior's 64
    coded = codec.encode(codec.analysis(x)[0])
    _, liks = run.model.apply(run.variables, jnp.asarray(x), train=False)
    hand = sum(float(np.sum(-np.log2(np.asarray(p, np.float64)))) for p in liks.values())
    assert coded.estimated_bits == pytest.approx(hand, rel=1e-6)
    decoded, nbytes, estimated = codec.code(x[0, ..., 0])
    assert nbytes == coded.nbytes and estimated == coded.estimated_bits
    np.testing.assert_allclose(decoded, codec.synthesis(coded.y_hat[None])[0, ..., 0], rtol=0, atol=0)


# --------------------------------------------------------------------------- georeferencing, no-data, units


def test_georeferencing_nodata_and_units_survive(runs, scene_tif, tmp_path):
    run = runs["factorized"]
    # float intensity, zero margin, no nodata value: NaN there
    _encode(run, scene_tif, tmp_path / "f.tif", tmp_path / "f.sarc", *WHOLE)
    _decode(tmp_path / "f.sarc", tmp_path / "f_dec.tif")
    out, crs, transform, nodata, tags = _read(tmp_path / "f_dec.tif")
    src = _read(scene_tif)[0]
    assert crs == CRS.from_epsg(32633) and transform == TRANSFORM and math.isnan(nodata)
    assert tags["UNITS"] == "intensity" and tags["MISSION"] == "S1A" and out.dtype == np.float32 and out.shape == SHAPE
    assert np.array_equal(np.isnan(out), src == 0) and (out[src > 0] > 0).all()
    header = read_sarc(tmp_path / "f.sarc")[0]
    assert header["nodata"] is None and header["nodata_nan"] and header["units"] == "intensity"
    # uint16 amplitude DNs with nodata 0 (a GRD): amplitude out, 0 at the margin, the same symbols as DN^2
    dn = _margin(np.clip(np.rint(100 * np.sqrt(_scene(seed=2))), 1, 65535).astype(np.uint16))
    _geotiff(tmp_path / "dn.tif", dn, nodata=0, units=None)
    _geotiff(tmp_path / "power.tif", dn.astype(np.float32) ** 2, units="intensity")
    _encode(run, tmp_path / "dn.tif", tmp_path / "dn_out.tif", tmp_path / "dn.sarc", *WHOLE)
    _encode(run, tmp_path / "power.tif", tmp_path / "power_out.tif", tmp_path / "power.sarc", *WHOLE)
    _decode(tmp_path / "dn.sarc", tmp_path / "dn_dec.tif")
    amp, crs, transform, nodata, tags = _read(tmp_path / "dn_dec.tif")
    assert crs == CRS.from_epsg(32633) and transform == TRANSFORM and nodata == 0
    assert tags["UNITS"] == "amplitude" and amp.dtype == np.float32
    assert np.array_equal(amp == 0, dn == 0)
    assert np.array_equal(amp, _read(tmp_path / "dn_out.tif")[0])
    header, streams = read_sarc(tmp_path / "dn.sarc")
    assert header["units"] == "amplitude" and header["nodata"] == 0 and header["input_dtype"] == "uint16"
    power_streams = read_sarc(tmp_path / "power.sarc")[1]
    assert streams == power_streams  # 20 log10 DN = 10 log10 DN^2: the same latent
    # each output in its own units, with its own log-bias correction (dB: intensity 1.0, amplitude 0.5)
    power = _read(tmp_path / "power_out.tif")[0]
    ok = dn > 0
    np.testing.assert_allclose(amp[ok] ** 2, power[ok] * 10 ** ((0.5 - 1.0) / 10), rtol=1e-5)


def test_complex_input_is_coded_as_its_intensity(runs, tmp_path):
    rng = np.random.default_rng(4)
    amp = np.sqrt(_scene(seed=3)).astype(np.float64)
    phase = rng.uniform(-np.pi, np.pi, SHAPE)
    z = _margin(amp * np.exp(1j * phase)).astype(np.complex64)
    re, im = z.real.astype(np.float64), z.imag.astype(np.float64)
    _geotiff(tmp_path / "slc.tif", z, units=None)
    _geotiff(tmp_path / "power.tif", (re * re + im * im).astype(np.float32), units="intensity")
    _encode(runs["hyperprior"], tmp_path / "slc.tif", tmp_path / "slc_out.tif", tmp_path / "slc.sarc", *WHOLE)
    _encode(runs["hyperprior"], tmp_path / "power.tif", tmp_path / "p_out.tif", tmp_path / "p.sarc", *WHOLE)
    header, streams = read_sarc(tmp_path / "slc.sarc")
    assert header["units"] == "intensity" and header["input_dtype"] == "complex64"
    assert streams == read_sarc(tmp_path / "p.sarc")[1]
    out, crs, *_ = _read(tmp_path / "slc_out.tif")
    assert out.dtype == np.float32 and crs == CRS.from_epsg(32633)
    assert np.array_equal(out, _read(tmp_path / "p_out.tif")[0], equal_nan=True)
    assert np.array_equal(np.isnan(out), z == 0)


# --------------------------------------------------------------------------- bad input


def _error(args, capsys, folder):
    """One ``error:`` line, exit status 2, and ``folder`` exactly as before."""
    before = sorted(p.name for p in folder.iterdir())
    code = _run(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert sorted(p.name for p in folder.iterdir()) == before
    return lines[0]


def test_bad_bitstreams_are_refused_in_one_line(runs, scene_tif, tmp_path, capsys):
    good = tmp_path / "good.sarc"
    _encode(runs["factorized"], scene_tif, tmp_path / "enc.tif", good, *WHOLE)
    data = good.read_bytes()
    out = tmp_path / "out" / "dec.tif"
    out.parent.mkdir()
    (tmp_path / "truncated.sarc").write_bytes(data[:-7])
    assert "truncated" in _error(["--from-latent", tmp_path / "truncated.sarc", "--output", out], capsys, out.parent)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10  # inside the y stream
    (tmp_path / "flipped.sarc").write_bytes(bytes(flipped))
    assert "CRC mismatch" in _error(["--from-latent", tmp_path / "flipped.sarc", "--output", out], capsys,
                                    out.parent)
    line = _error(["--from-latent", good, "--output", out, "--checkpoint", runs["factorized_other"]], capsys,
                  out.parent)
    assert "coded by checkpoint sha256:" in line and "decode it with the checkpoint that encoded it" in line
    line = _error(["--from-latent", good, "--output", out, "--checkpoint", runs["baseline"]], capsys, out.parent)
    assert "coded by a model.kind 'factorized' model" in line
    (tmp_path / "foreign.sarc").write_bytes(scene_tif.read_bytes())
    assert "not a sar_jax bitstream" in _error(["--from-latent", tmp_path / "foreign.sarc", "--output", out], capsys,
                                               out.parent)


def test_wrong_latent_kinds_are_refused_before_writing(runs, scene_tif, tmp_path, capsys):
    def scene_args(kind, latent, output="out.tif"):
        return ["--checkpoint", runs[kind], "--input", scene_tif, "--output", tmp_path / output,
                "--save-latent", tmp_path / latent]

    line = _error(scene_args("baseline", "x.sarc"), capsys, tmp_path)
    assert "x.sarc" in line and "factorized or hyperprior" in line
    line = _error(scene_args("factorized", "x.tif"), capsys, tmp_path)
    assert "give a .sarc file name" in line
    line = _error(scene_args("unet", "x.sarc"), capsys, tmp_path)
    assert "model.kind 'unet' has no latent to save" in line
    # an output the decoder cannot write: refused with no bitstream left behind
    line = _error(scene_args("factorized", "x.sarc", "out.png"), capsys, tmp_path)
    assert "PNG holds 8-bit values" in line


def test_a_stream_that_does_not_decode_is_one_line(runs, scene_tif, tmp_path, capsys):
    """CRC-valid files with a stream of the wrong size or none: the decoder's error, nothing written."""
    from sar_jax.codec.container import write_sarc

    _encode(runs["hyperprior"], scene_tif, tmp_path / "enc.tif", tmp_path / "good.sarc", *WHOLE)
    header, streams = read_sarc(tmp_path / "good.sarc")
    out = tmp_path / "out"
    out.mkdir()
    write_sarc(tmp_path / "bad.sarc", header, {**streams, "valid": zlib.compress(b"short")})
    line = _error(["--from-latent", tmp_path / "bad.sarc", "--output", out / "dec.tif"], capsys, out)
    assert f"cannot decode its streams (the no-data mask holds 5 bytes, expected {272 * 300 // 8})" in line
    write_sarc(tmp_path / "nostream.sarc", header, {k: v for k, v in streams.items() if k != "z"})
    line = _error(["--from-latent", tmp_path / "nostream.sarc", "--output", out / "dec.tif"], capsys, out)
    assert "missing stream 'z'" in line


# --------------------------------------------------------------------------- the U-Net


def test_unet_keeps_georeferencing_and_tiles_exactly(runs, scene_tif, tmp_path):
    run = runs["unet"]
    assert _run(["--checkpoint", run, "--input", scene_tif, "--output", tmp_path / "whole.tif", *WHOLE]) == 0
    assert _run(["--checkpoint", run, "--input", scene_tif, "--output", tmp_path / "tiled.tif", "--tile", "64"]) == 0
    whole, crs, transform, nodata, tags = _read(tmp_path / "whole.tif")
    tiled = _read(tmp_path / "tiled.tif")[0]
    src = _read(scene_tif)[0]
    assert crs == CRS.from_epsg(32633) and transform == TRANSFORM and math.isnan(nodata)
    assert tags["UNITS"] == "intensity" and whole.dtype == np.float32
    assert np.array_equal(np.isnan(whole), src == 0) and np.array_equal(np.isnan(tiled), src == 0)
    ok = src > 0
    np.testing.assert_allclose(tiled[ok], whole[ok], rtol=1e-5)
    # linear units: the amplitude scene sqrt(I) comes out as the square root of I's output, each with its
    # own log-bias correction (dB: intensity 1.0, amplitude 0.5); dB or [0, 1] outputs would not
    _geotiff(tmp_path / "amp.tif", np.sqrt(src), units="amplitude")
    assert _run(["--checkpoint", run, "--input", tmp_path / "amp.tif", "--output", tmp_path / "amp_out.tif",
                 *WHOLE]) == 0
    amp, *_, amp_tags = _read(tmp_path / "amp_out.tif")
    assert amp_tags["UNITS"] == "amplitude"
    np.testing.assert_allclose(amp[ok] ** 2, whole[ok] * 10 ** ((0.5 - 1.0) / 10), rtol=1e-4)


# --------------------------------------------------------------------------- several processes


def test_processes_share_a_folder_of_scenes(runs, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for i in range(2):
        _geotiff(scenes / f"s{i}.tif", _margin(_scene(seed=10 + i)))
    out, latents = tmp_path / "out", tmp_path / "latents"
    common = ["--checkpoint", runs["factorized"], "--input", scenes, "--output", out, "--save-latent-dir", latents,
              *WHOLE, "--num-processes", "2"]
    assert _run([*common, "--process-id", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["s1.tif"]
    assert sorted(p.name for p in latents.iterdir()) == ["s1.sarc"]
    assert _run([*common, "--process-id", "0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["s0.tif", "s1.tif"]
    assert sorted(p.name for p in latents.iterdir()) == ["s0.sarc", "s1.sarc"]
    for i in range(2):
        header = read_sarc(latents / f"s{i}.sarc")[0]
        assert header["input"] == str(scenes / f"s{i}.tif")
        _decode(latents / f"s{i}.sarc", tmp_path / f"dec{i}.tif")
        assert np.array_equal(_read(tmp_path / f"dec{i}.tif")[0], _read(out / f"s{i}.tif")[0], equal_nan=True)
