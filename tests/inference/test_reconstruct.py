"""python -m sar_jax.reconstruct: any size, seamless, units and formats kept, streaming, latents."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
from PIL import Image

from sar_jax.core.cli import run_main
from sar_jax.data.preprocess import normalize
from sar_jax.data.synthetic import synthetic_scenes
from sar_jax.inference import reconstruct
from sar_jax.inference.tiling import TileGrid

GEO_EXTRATAGS = [(33550, "d", 3, (10.0, 10.0, 0.0), True),
                 (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0), True),
                 (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), True),
                 (34737, "s", 0, "WGS 84 / UTM zone 33N|", True)]


def _scene(shape, seed=0, looks=4.0):
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(0, 1, (shape[0] // 8 + 2, shape[1] // 8 + 2)))
    base = np.kron(base, np.ones((8, 8)))[:shape[0], :shape[1]]
    return (base * rng.gamma(looks, 1 / looks, shape)).astype(np.float32)


def _run(args):
    return run_main(reconstruct.main, args + ["--quiet"])


def _params(run_dir, mode=None):
    from sar_jax.training.checkpointing import read_metadata

    p = read_metadata(run_dir)["preprocessing_params"]
    return dict(p, mode=mode or p["mode"])


@pytest.mark.parametrize("shape,tile", [((100, 37), 256), ((300, 517), 64), ((20, 700), 64)])
def test_ragged_sizes_keep_shape_and_units(intensity_run, tmp_path, shape, tile):
    scene = _scene(shape)
    np.save(tmp_path / "in.npy", scene)
    assert _run(["--checkpoint", str(intensity_run), "--input", str(tmp_path / "in.npy"), "--output",
                 str(tmp_path / "out.npy"), "--tile", str(tile), "--overlap", "16", "--batch-size", "8"]) == 0
    out = np.load(tmp_path / "out.npy")
    assert out.shape == shape and out.dtype == np.float32 and np.isfinite(out).all()
    p = _params(intensity_run)
    lo, hi = 10 ** (p["vmin"] / 10), 10 ** (p["vmax"] / 10)
    assert out.min() >= lo * (1 - 1e-4) and out.max() <= hi * (1 + 1e-4)  # intensity, inside the clip range
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in.npy", "out.npy"]  # no temp files left


def test_amplitude_in_amplitude_out(intensity_run, tmp_path):
    # intensity and amplitude share the dB scale: reconstructing sqrt(I) as amplitude gives sqrt(recon(I))
    scene = _scene((96, 130), seed=1)
    np.save(tmp_path / "i.npy", scene)
    np.save(tmp_path / "a.npy", np.sqrt(scene))
    common = ["--checkpoint", str(intensity_run), "--tile", "64", "--overlap", "16"]
    assert _run(common + ["--input", str(tmp_path / "i.npy"), "--output", str(tmp_path / "i_out.npy")]) == 0
    assert _run(common + ["--input", str(tmp_path / "a.npy"), "--output", str(tmp_path / "a_out.npy"),
                          "--units", "amplitude"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a_out.npy") ** 2, np.load(tmp_path / "i_out.npy"), rtol=1e-3)


def test_geotiff_in_geotiff_out_keeps_tags(intensity_run, tmp_path):
    scene = _scene((70, 90), seed=2)
    tifffile.imwrite(tmp_path / "in.tif", scene, photometric="minisblack", extratags=GEO_EXTRATAGS)
    assert _run(["--checkpoint", str(intensity_run), "--input", str(tmp_path / "in.tif"),
                 "--output", str(tmp_path / "out.tif"), "--tile", "64", "--overlap", "16"]) == 0
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        out = tif.asarray()
        tags = {t.code: t.value for t in tif.pages[0].tags.values()}
        assert tif.is_geotiff
    assert out.shape == scene.shape and out.dtype == np.float32
    for code, _, _, value, _ in GEO_EXTRATAGS:
        got = tags[code]
        assert (tuple(got) if isinstance(value, tuple) else got) == value, code


def test_log8_png_and_uint8_outputs(log8_run, tmp_path):
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(110, 35, (150, 210)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    np.save(tmp_path / "in.npy", img)
    for src, dst in (("in.png", "out.png"), ("in.png", "out.tif"), ("in.npy", "out.npy")):
        assert _run(["--checkpoint", str(log8_run), "--input", str(tmp_path / src), "--output", str(tmp_path / dst),
                     "--tile", "64", "--overlap", "16"]) == 0
    png = np.array(Image.open(tmp_path / "out.png"))
    assert png.dtype == np.uint8 and png.shape == img.shape
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), png)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), png)


def test_latent_round_trip_reproduces_the_direct_reconstruction(intensity_run, tmp_path):
    scene = _scene((140, 200), seed=4)
    np.save(tmp_path / "in.npy", scene)
    common = ["--checkpoint", str(intensity_run), "--input", str(tmp_path / "in.npy"), "--tile", "64", "--overlap", "16"]
    assert _run(common + ["--output", str(tmp_path / "direct.npy")]) == 0
    assert _run(common + ["--output", str(tmp_path / "enc.npy"), "--save-latent", str(tmp_path / "z16.npz")]) == 0
    assert _run(common + ["--output", str(tmp_path / "enc32.npy"), "--save-latent", str(tmp_path / "z32.npz"),
                          "--latent-dtype", "float32"]) == 0
    # decoding needs no --checkpoint: the latent file records it
    assert _run(["--from-latent", str(tmp_path / "z16.npz"), "--output", str(tmp_path / "dec16.npy")]) == 0
    assert _run(["--from-latent", str(tmp_path / "z32.npz"), "--output", str(tmp_path / "dec32.npy"),
                 "--checkpoint", str(intensity_run)]) == 0
    direct = np.load(tmp_path / "direct.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "enc.npy"), direct)
    p = _params(intensity_run)
    norm = lambda name: normalize(np.load(tmp_path / name), p)  # noqa: E731
    np.testing.assert_allclose(norm("dec32.npy"), norm("direct.npy"), atol=1e-5)
    np.testing.assert_allclose(norm("dec16.npy"), norm("direct.npy"), atol=5e-3)  # float16 latent tolerance
    with np.load(tmp_path / "z16.npz") as npz:
        z, meta = npz["z"], json.loads(str(npz["meta"]))
    grid = TileGrid.from_dict(meta["grid"])
    assert z.dtype == np.float16 and z.shape == (grid.rows, grid.cols, 4, 4, 4)
    assert (grid.height, grid.width, grid.tile, grid.overlap) == (140, 200, 64, 16)
    assert meta["preprocessing_params"] == p and meta["units"] == "intensity"
    assert meta["config"]["model"]["latent_channels"] == 4


def _border_energy_ratio(y: np.ndarray, grid: TileGrid) -> float:
    """Mean squared gradient across tile-border lines / across the other lines of the same phase
    modulo 16 (the decoder's transposed convolutions leave a 16-periodic texture), both axes pooled."""
    sums = np.zeros(4)
    for axis in (0, 1):
        energy = (np.diff(y, axis=axis) ** 2).mean(axis=1 - axis)  # energy[k]: between lines k and k+1
        border = np.array(grid.border_positions(axis)) - 1
        near = np.zeros(len(energy), bool)
        for b in border:
            near[max(0, b - 3):b + 4] = True
        ref = np.array([k for k in range(len(energy)) if k % 16 in set(border % 16) and not near[k]])
        sums += (energy[border].sum(), len(border), energy[ref].sum(), len(ref))
    return (sums[0] / sums[1]) / (sums[2] / sums[3])


def test_no_visible_seams(intensity_run, tmp_path):
    scene = synthetic_scenes(1, 1024, 4.0, 1)[0].astype(np.float32)
    np.save(tmp_path / "scene.npy", scene)
    p = _params(intensity_run)
    ratios = {}
    for overlap in (32, 0):
        out = tmp_path / f"out{overlap}.npy"
        assert _run(["--checkpoint", str(intensity_run), "--input", str(tmp_path / "scene.npy"), "--output", str(out),
                     "--tile", "128", "--overlap", str(overlap), "--batch-size", "32"]) == 0
        grid = TileGrid.create(1024, 1024, 128, overlap)
        ratios[overlap] = _border_energy_ratio(normalize(np.load(out), p), grid)
    assert abs(ratios[32] - 1) < 0.10, ratios
    assert abs(ratios[0] - 1) > 0.10, ratios  # the measure does see hard tile edges


def test_real_scenes_reconstruct_without_seams(log8_run, real_dir, tmp_path):
    p = _params(log8_run)
    for scene in ("real_sar_scene_a.png", "real_sar_scene_b.png"):
        out = tmp_path / scene
        assert _run(["--checkpoint", str(log8_run), "--input", str(real_dir / scene), "--output", str(out),
                     "--tile", "128", "--overlap", "32", "--batch-size", "32"]) == 0
        src = np.array(Image.open(real_dir / scene))
        rec = np.array(Image.open(out))
        assert rec.shape == src.shape and rec.dtype == np.uint8
        if scene == "real_sar_scene_a.png":
            ratio = _border_energy_ratio(normalize(rec.astype(np.float32), p), TileGrid.create(*src.shape, 128, 32))
            assert abs(ratio - 1) < 0.10, ratio


MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from sar_jax.inference import reconstruct
    run, big, small, out = sys.argv[1:5]
    kw = dict(tile=256, overlap=32, batch_size=64, progress=False)
    reconstruct.reconstruct_scene(run, small, out + ".small.npy", **kw)   # compile and warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = reconstruct.reconstruct_scene(run, big, out, **kw)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (after - before) / 1024, "peak_mb": after / 1024, **summary}))
""")


def test_memory_stays_bounded_on_a_large_memmapped_scene(intensity_run, tmp_path):
    size = 8000
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(size, size))
    block = _scene((500, size), seed=5)
    for r in range(0, size, 500):
        big[r:r + 500] = block
    big.flush()
    del big
    np.save(tmp_path / "small.npy", block[:300, :600])
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(intensity_run), str(tmp_path / "big.npy"),
                           str(tmp_path / "small.npy"), str(tmp_path / "out.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["lazy_input"] and result["shape"] == [size, size]
    assert result["growth_mb"] < 1536, result  # the input alone is 244 MiB, input + output 488 MiB
    out = np.load(tmp_path / "out.npy", mmap_mode="r")
    assert out.shape == (size, size) and np.isfinite(out[::997, ::997]).all()


@pytest.mark.parametrize("case,match", [
    ("missing_checkpoint", "no such run directory"),
    ("missing_input", "no such file"),
    ("bad_ext", "unsupported extension"),
    ("tile", "multiple of 16"),
    ("overlap", "overlap"),
    ("png_for_float", "PNG holds 8-bit"),
    ("log8_into_linear", "log8"),
    ("negative", "negative values"),
    ("bad_latent", "not a sar_jax latent file"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(intensity_run, tmp_path, capsys, case, match):
    np.save(tmp_path / "in.npy", _scene((40, 50)))
    np.save(tmp_path / "neg.npy", -_scene((40, 300)))
    np.save(tmp_path / "u8.npy", np.zeros((40, 50), np.uint8))
    np.savez(tmp_path / "junk.npz", a=np.zeros(3))
    ck, inp, out = str(intensity_run), str(tmp_path / "in.npy"), str(tmp_path / "out.npy")
    args = {
        "missing_checkpoint": ["--checkpoint", str(tmp_path / "nope"), "--input", inp, "--output", out],
        "missing_input": ["--checkpoint", ck, "--input", str(tmp_path / "nope.npy"), "--output", out],
        "bad_ext": ["--checkpoint", ck, "--input", inp, "--output", str(tmp_path / "out.jpg")],
        "tile": ["--checkpoint", ck, "--input", inp, "--output", out, "--tile", "100"],
        "overlap": ["--checkpoint", ck, "--input", inp, "--output", out, "--tile", "64", "--overlap", "32"],
        "png_for_float": ["--checkpoint", ck, "--input", inp, "--output", str(tmp_path / "out.png")],
        "log8_into_linear": ["--checkpoint", ck, "--input", str(tmp_path / "u8.npy"), "--output", out],
        "negative": ["--checkpoint", ck, "--input", str(tmp_path / "neg.npy"), "--output", out, "--tile", "32",
                     "--overlap", "8"],
        "bad_latent": ["--from-latent", str(tmp_path / "junk.npz"), "--output", out],
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing (half-)written
