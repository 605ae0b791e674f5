"""The SAR reader (sar_jax.data.readers.open_raster): every kind of raster a user has, windows,
validity, bits per pixel, and bad input as one line."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from sar_jax.core.errors import SarJaxError
from sar_jax.data.readers import Raster, list_sar_files, open_raster

H, W = 24, 40
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_000_000.0)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def write_tif(path, arr, dtype=None, nodata=None, tags=None, band_units=None, tiled=False, compress=None):
    """A GeoTIFF (UTM 33N, 10 m pixels) through rasterio; ``arr`` (H, W) or (bands, H, W)."""
    arr = arr if arr.ndim == 3 else arr[None]
    profile = {"driver": "GTiff", "height": arr.shape[1], "width": arr.shape[2], "count": arr.shape[0],
               "dtype": dtype or arr.dtype.name, "crs": "EPSG:32633", "transform": TRANSFORM}
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        if tags:
            dst.update_tags(**tags)
        if band_units:
            dst.units = band_units
    return path


def read_quiet(path, **kw):
    """open + whole read, failing on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raster = open_raster(path, **kw)
        return raster, *raster.read()


def one_line_error(capfd, fn, *fragments):
    """``fn()`` raises one SarJaxError line holding every fragment, and nothing is printed."""
    with pytest.raises(SarJaxError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)  # e.g. no stray "WARNING:tifffile" line before the error
    return msg


# ---------------------------------------------------------------------- units


@pytest.mark.parametrize("how,expected", [
    ("tag", "intensity"), ("band_unit", "intensity"), ("safe_note", "intensity"),
    ("tag_amplitude", "amplitude"), ("band_unit_db", "db"),
])
def test_float32_units_from_the_files_metadata(tmp_path, rng, how, expected):
    arr = rng.gamma(2.0, 0.5, (H, W)).astype(np.float32)
    if expected == "db":
        arr = (10 * np.log10(arr)).astype(np.float32)  # negative values are fine in dB
        assert (arr < 0).any()
    kw = {"tag": {"tags": {"UNITS": "intensity"}}, "band_unit": {"band_units": ("linear power",)},
          "safe_note": {"tags": {"CALIBRATION": "sigmaNought"}},
          "tag_amplitude": {"tags": {"units": "Amplitude"}}, "band_unit_db": {"band_units": ("dB",)}}[how]
    path = write_tif(tmp_path / "x.tif", arr, **kw)
    raster, values, valid = read_quiet(path)
    assert raster.units == expected and raster.source_dtype == "float32" and raster.bits_per_pixel == 32
    assert (raster.height, raster.width) == (H, W) and not raster.phase_dropped and raster.nodata is None
    assert values.dtype == np.float32 and valid.dtype == bool and valid.all()
    np.testing.assert_array_equal(values, arr)
    # georeferencing and tags are carried for the outputs
    assert raster.crs.to_epsg() == 32633 and raster.transform == TRANSFORM
    for key, value in kw.get("tags", {}).items():
        assert raster.tags[key] == value


def test_untagged_float_is_refused_in_auto_and_read_with_explicit_units(tmp_path, capfd, rng):
    arr = rng.gamma(2.0, 0.5, (H, W)).astype(np.float32)
    for path in (write_tif(tmp_path / "plain.tif", arr), tmp_path / "plain.npy"):
        np.save(tmp_path / "plain.npy", arr)
        one_line_error(capfd, lambda: open_raster(path), str(path), "unknown units", "intensity, amplitude or db")
        for units in ("intensity", "amplitude"):
            raster, values, valid = read_quiet(path, units=units)
            assert raster.units == units and valid.all()
            np.testing.assert_array_equal(values, arr)
    db = (10 * np.log10(arr)).astype(np.float32)
    np.save(tmp_path / "db.npy", db)
    raster, values, valid = read_quiet(tmp_path / "db.npy", units="db")
    assert raster.units == "db" and valid.all()
    np.testing.assert_array_equal(values, db)
    one_line_error(capfd, lambda: open_raster(tmp_path / "db.npy", units="intensity").read(), "db.npy",
                   "negative values in a intensity raster", "units='db'")
    one_line_error(capfd, lambda: open_raster(tmp_path / "db.npy", units="sigma"), "units = 'sigma'")


# ---------------------------------------------------------------------- complex and I/Q


def _exact_power(re, im):
    re, im = np.asarray(re, np.float64), np.asarray(im, np.float64)
    return (re * re + im * im).astype(np.float32)


def test_complex64_slc(tmp_path, capfd, rng):
    slc = (rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))).astype(np.complex64)
    path = write_tif(tmp_path / "slc.tif", slc)
    raster, values, valid = read_quiet(path)
    assert raster.units == "intensity" and raster.phase_dropped and raster.source_dtype == "complex64"
    assert raster.bits_per_pixel == 64 and valid.all()
    np.testing.assert_array_equal(values, _exact_power(slc.real, slc.imag))  # |z|^2 exactly
    raster, values, _ = read_quiet(path, units="amplitude")
    assert raster.units == "amplitude"
    np.testing.assert_allclose(values, np.abs(slc.astype(np.complex128)), rtol=1e-6)
    np.save(tmp_path / "slc.npy", slc.astype(np.complex128))
    raster, values, _ = read_quiet(tmp_path / "slc.npy")
    assert raster.units == "intensity" and raster.bits_per_pixel == 128
    np.testing.assert_array_equal(values, _exact_power(slc.real, slc.imag))
    one_line_error(capfd, lambda: open_raster(path, units="db"), "slc.tif", "complex/I-Q")


def test_cint16_slc(tmp_path, rng):
    re, im = (rng.integers(-3000, 3000, (H, W)).astype(np.int16) for _ in range(2))
    path = write_tif(tmp_path / "cint16.tif", (re + 1j * im).astype(np.complex64), dtype="complex_int16")
    raster, values, valid = read_quiet(path)
    assert raster.source_dtype == "complex_int16" and raster.bits_per_pixel == 32 and raster.phase_dropped
    expected = _exact_power(re, im)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(valid, expected > 0)
    _, amplitude, _ = read_quiet(path, units="amplitude")
    np.testing.assert_allclose(amplitude, np.hypot(re.astype(np.float64), im), rtol=1e-6)


def test_iq_int16_band_pair(tmp_path, rng):
    iq = rng.integers(-2000, 2000, (2, H, W)).astype(np.int16)
    iq[:, 0, 0] = 0  # |z| = 0: invalid in linear units
    raster, values, valid = read_quiet(write_tif(tmp_path / "iq.tif", iq))
    assert raster.source_dtype == "int16" and raster.bits_per_pixel == 32 and raster.phase_dropped
    assert raster.units == "intensity"
    np.testing.assert_array_equal(values, _exact_power(iq[0], iq[1]))
    assert not valid[0, 0]
    np.testing.assert_array_equal(valid, (iq[0] != 0) | (iq[1] != 0))
    for layout in ("first", "last"):
        arr = iq.astype(np.float32) if layout == "first" else np.moveaxis(iq, 0, -1).astype(np.float32)
        np.save(tmp_path / f"iq_{layout}.npy", arr)
        r, v, _ = read_quiet(tmp_path / f"iq_{layout}.npy", units="amplitude")
        assert r.units == "amplitude" and r.bits_per_pixel == 64 and (r.height, r.width) == (H, W)
        np.testing.assert_allclose(v, np.hypot(iq[0].astype(np.float64), iq[1]), rtol=1e-6)


def test_band_choice(tmp_path, capfd, rng):
    arr = rng.uniform(0.1, 1.0, (3, H, W)).astype(np.float32)
    path = write_tif(tmp_path / "b3.tif", arr, tags={"UNITS": "intensity"})
    for band in range(3):
        raster, values, _ = read_quiet(path, band=band)
        assert raster.bits_per_pixel == 32 and not raster.phase_dropped
        np.testing.assert_array_equal(values, arr[band])
    one_line_error(capfd, lambda: open_raster(path), "b3.tif", "3 bands", "band=0..2")
    one_line_error(capfd, lambda: open_raster(path, band=3), "b3.tif", "band=3", "3 bands")


# ---------------------------------------------------------------------- no-data


def test_uint16_dn_with_zero_margins(tmp_path, rng):
    dn = rng.integers(1, 4000, (H, W)).astype(np.uint16)
    dn[:, :7] = 0  # GRD no-data margin
    dn[:3, :] = 0
    raster, values, valid = read_quiet(write_tif(tmp_path / "grd.tif", dn, tiled=True, compress="deflate"))
    assert raster.units == "amplitude" and raster.source_dtype == "uint16" and raster.bits_per_pixel == 16
    np.testing.assert_array_equal(values, dn.astype(np.float32))
    np.testing.assert_array_equal(valid, dn > 0)


def test_declared_nodata_value(tmp_path, rng):
    arr = rng.gamma(2.0, 0.5, (H, W)).astype(np.float32)
    arr[5:9, 10:30] = -9999.0
    raster, values, valid = read_quiet(write_tif(tmp_path / "nd.tif", arr, nodata=-9999.0,
                                                 tags={"UNITS": "intensity"}))
    assert raster.nodata == -9999.0
    np.testing.assert_array_equal(valid, arr != -9999.0)  # and the negative nodata is not "negative data"
    np.testing.assert_array_equal(values[valid], arr[valid])


@pytest.mark.parametrize("ext", [".tif", ".npy"])
def test_nan_borders_are_invalid_and_refused_when_strict(tmp_path, capfd, rng, ext):
    arr = rng.uniform(1.0, 2.0, (H, W)).astype(np.float32)
    arr[:, -5:] = np.nan
    arr[0, 0], arr[1, 1] = np.inf, -np.inf
    path = tmp_path / f"nan{ext}"
    np.save(path, arr) if ext == ".npy" else write_tif(path, arr)
    raster, values, valid = read_quiet(path, units="intensity")
    np.testing.assert_array_equal(valid, np.isfinite(arr))
    np.testing.assert_array_equal(values[valid], arr[valid])
    n_bad = int((~np.isfinite(arr)).sum())
    one_line_error(capfd, lambda: open_raster(path, units="intensity", strict=True).read(), path.name,
                   f"{n_bad} NaN/Inf pixels", "strict")


def test_all_invalid_is_refused(tmp_path, capfd):
    zeros = np.zeros((H, W), np.uint16)
    path = write_tif(tmp_path / "empty_grd.tif", zeros)
    raster = open_raster(path)
    one_line_error(capfd, raster.read, "empty_grd.tif", "every pixel is invalid")
    assert raster.validity(4).shape == (6, 10) and not raster.validity(4).any()
    nan = np.full((H, W), np.nan, np.float32)
    np.save(tmp_path / "allnan.npy", nan)
    one_line_error(capfd, lambda: open_raster(tmp_path / "allnan.npy", units="db").read(), "allnan.npy",
                   "every pixel is invalid")


# ---------------------------------------------------------------------- windows and validity


@pytest.fixture
def tiled_scene(tmp_path, rng):
    """A 70 x 90 tiled (16 px) DEFLATE float32 intensity GeoTIFF with zero margins and NaN holes."""
    arr = rng.gamma(1.0, 1.0, (70, 90)).astype(np.float32)
    arr[:, :11] = 0.0
    arr[40:43, 50:80] = np.nan
    return write_tif(tmp_path / "tiled.tif", arr, tiled=True, compress="deflate", tags={"UNITS": "intensity"}), arr


def test_tiled_deflate_windows_equal_slices_of_the_whole(tiled_scene):
    path, arr = tiled_scene
    with rasterio.open(path) as ds:
        assert ds.block_shapes[0] == (16, 16) and ds.compression.value == "DEFLATE"
    raster = open_raster(path)
    whole, whole_valid = raster.read()
    np.testing.assert_array_equal(whole_valid, np.isfinite(arr) & (arr != 0))
    for r0, c0, h, w in [(0, 0, 70, 90), (5, 7, 33, 41), (15, 15, 2, 2), (63, 80, 7, 10), (0, 89, 70, 1), (3, 3, 0, 5)]:
        values, valid = raster.read((r0, c0, h, w))
        assert values.shape == valid.shape == (h, w)
        np.testing.assert_array_equal(valid, whole_valid[r0:r0 + h, c0:c0 + w])
        np.testing.assert_array_equal(values[valid], whole[r0:r0 + h, c0:c0 + w][valid])
    with pytest.raises(SarJaxError, match="outside the 70x90 raster"):
        raster.read((60, 0, 11, 5))


@pytest.mark.parametrize("fmt", ["tif", "npy", "png"])
def test_validity_from_a_strided_read(tmp_path, tiled_scene, fmt):
    path, arr = tiled_scene
    if fmt == "npy":
        path = tmp_path / "s.npy"
        np.save(path, arr)
    elif fmt == "png":
        path = tmp_path / "s.png"
        Image.fromarray(np.nan_to_num(arr * 60).clip(0, 255).astype(np.uint8)).save(path)
    raster = open_raster(path, units="intensity" if fmt == "npy" else "auto")
    _, valid = raster.read()
    if fmt == "png":
        assert raster.units == "log8" and valid.all()  # 8-bit views: 0 is a value, not no-data
    for step in (1, 3, 7, 16, 100):
        mask = raster.validity(step)
        assert mask.shape == (-(-70 // step), -(-90 // step))
        np.testing.assert_array_equal(mask, valid[::step, ::step])


def test_validity_from_overviews(tmp_path, rng):
    """With overviews, validity() reads them instead of the full raster (proved by stale overviews)."""
    from rasterio.enums import Resampling

    arr = rng.uniform(1, 2, (128, 128)).astype(np.float32)
    arr[:, :16] = 0.0  # a zero margin aligned with the 8 px step
    path = write_tif(tmp_path / "ov.tif", arr, tiled=True, compress="deflate", tags={"UNITS": "intensity"})
    with rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4, 8], Resampling.nearest)
    raster = open_raster(path)
    expected = np.ones((16, 16), bool)
    expected[:, :2] = False
    np.testing.assert_array_equal(raster.validity(8), expected)
    np.testing.assert_array_equal(raster.validity(8), raster.read()[1][::8, ::8])
    with rasterio.open(path, "r+") as dst:  # new no-data in the full raster only: the overviews are now stale
        dst.write(np.zeros((64, 128), np.float32), 1, window=rasterio.windows.Window(0, 0, 128, 64))
    np.testing.assert_array_equal(open_raster(path).validity(8), expected)
    np.testing.assert_array_equal(open_raster(path).validity(1)[:64], False)  # step 1: the full raster


def test_windows_of_npy_png_and_tif_and_a_pickled_raster(tmp_path, rng):
    arr = rng.integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "v.png")
    np.save(tmp_path / "v.npy", arr.astype(np.float32) + 1)
    write_tif(tmp_path / "v.tif", arr.astype(np.float32) + 2, tags={"UNITS": "amplitude"})
    for path, units, expected in ((tmp_path / "v.png", "auto", arr.astype(np.float32)),
                                  (tmp_path / "v.npy", "amplitude", arr.astype(np.float32) + 1),
                                  (tmp_path / "v.tif", "auto", arr.astype(np.float32) + 2)):
        raster = open_raster(path, units=units)
        clone = pickle.loads(pickle.dumps(raster))  # data-loader workers receive it pickled
        assert isinstance(clone, Raster) and clone == raster and hash(clone) == hash(raster)
        np.testing.assert_array_equal(clone.read((2, 3, 10, 20))[0], expected[2:12, 3:23])


def _read_in_child(raster, window, queue):
    from sar_jax.data.raster_io import dataset_handle

    queue.put((raster.read(window)[0], id(dataset_handle(raster))))


def test_forked_worker_opens_its_own_file(tiled_scene):
    """A forked data-loader worker does not reuse the parent's open dataset (whose file offset it would
    share): its handle is a new object, and its reads are right while the parent keeps reading."""
    import multiprocessing

    from sar_jax.data.raster_io import dataset_handle

    path, _ = tiled_scene
    raster = open_raster(path)
    expected = raster.read((10, 20, 30, 40))[0]  # the parent now holds an open, cached dataset
    parent_handle = id(dataset_handle(raster))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_read_in_child, args=(raster, (10, 20, 30, 40), queue)) for _ in range(2)]
    for child in children:
        child.start()
    for _ in range(20):
        raster.read((40, 0, 30, 90))
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    for values, handle in results:
        assert handle != parent_handle  # inherited objects keep their id in a forked child
        np.testing.assert_array_equal(values, expected)


# ---------------------------------------------------------------------- 8-bit views and bit counts


def test_uint8_is_log8_unless_units_say_otherwise(tmp_path, rng):
    arr = rng.integers(0, 256, (H, W), dtype=np.uint8)
    arr[0, 0], arr[0, 1] = 0, 255
    for path in (write_tif(tmp_path / "v.tif", arr), tmp_path / "g.png"):
        Image.fromarray(arr).save(tmp_path / "g.png")
        raster, values, valid = read_quiet(path)
        assert raster.units == "log8" and raster.bits_per_pixel == 8 and valid.all()
        np.testing.assert_array_equal(values, arr.astype(np.float32))
        raster, _, valid = read_quiet(path, units="amplitude")  # quantised linear DN
        assert raster.units == "amplitude" and not valid[0, 0] and valid.sum() == (arr > 0).sum()


@pytest.mark.parametrize("dtype,bands,bits", [
    ("uint8", 1, 8), ("uint16", 1, 16), ("int16", 2, 32), ("float32", 1, 32), ("float64", 1, 64),
    ("float32", 2, 64), ("complex64", 1, 64), ("complex_int16", 1, 32),
])
def test_bits_per_pixel(tmp_path, dtype, bands, bits):
    arr = np.ones((bands, 8, 8), np.complex64 if dtype.startswith("complex") else dtype)
    raster = open_raster(write_tif(tmp_path / "b.tif", arr, dtype=dtype), units="amplitude")
    assert raster.bits_per_pixel == bits and raster.phase_dropped == (bands == 2 or dtype.startswith("complex"))


def test_rgb_png_is_converted_with_a_warning_or_refused_when_strict(tmp_path, capfd, rng):
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.warns(UserWarning, match=r"colour image \(mode RGB\) converted to grayscale"):
        raster = open_raster(tmp_path / "rgb.png")
    assert raster.units == "log8"
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(raster.read()[0], expected)
    one_line_error(capfd, lambda: open_raster(tmp_path / "rgb.png", strict=True), "rgb.png", "strict")


# ---------------------------------------------------------------------- bad input


def test_missing_and_unsupported_paths(tmp_path, capfd):
    one_line_error(capfd, lambda: open_raster(tmp_path / "absent.tif"), "absent.tif", "no such file")
    one_line_error(capfd, lambda: list_sar_files(tmp_path / "absent"), "no such file or folder")
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(capfd, lambda: open_raster(tmp_path / "notes.txt"), "unsupported extension '.txt'")
    one_line_error(capfd, lambda: list_sar_files(tmp_path / "notes.txt"), "unsupported extension")
    one_line_error(capfd, lambda: list_sar_files(tmp_path), "no SAR files")  # only a .txt inside
    np.save(tmp_path / "flags.npy", np.ones((H, W), bool))
    one_line_error(capfd, lambda: open_raster(tmp_path / "flags.npy"), "flags.npy", "unsupported data type bool")


def test_list_sar_files_sorted_and_filtered(tmp_path):
    for name in ("b.PNG", "a.tif", "c.npy", "d.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_sar_files(tmp_path)] == ["a.tif", "b.PNG", "c.npy"]


def _corrupt_files(tmp_path, rng):
    arr = rng.uniform(0.1, 1, (64, 64)).astype(np.float32)
    write_tif(tmp_path / "ok.tif", arr, tiled=True, compress="deflate", tags={"UNITS": "intensity"})
    np.save(tmp_path / "ok.npy", arr)
    Image.fromarray((arr * 255).astype(np.uint8)).save(tmp_path / "ok.png")
    out = []
    for ext in (".tif", ".npy", ".png"):
        raw = (tmp_path / f"ok{ext}").read_bytes()
        for tag, data in (("trunc", raw[: len(raw) // 2]), ("trunc90", raw[: len(raw) * 9 // 10]),
                          ("head", raw[:12]), ("empty", b""), ("junk", raw[:8] + b"\x00\xff" * 40)):
            p = tmp_path / f"{tag}{ext}"
            p.write_bytes(data)
            out.append(p)
    np.savez(tmp_path / "arch.npz", a=arr)  # an archive renamed to .npy
    (tmp_path / "arch.npy").write_bytes((tmp_path / "arch.npz").read_bytes())
    np.save(tmp_path / "obj.npy", np.array([1, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "str.npy", np.array([["ab"]]))
    np.save(tmp_path / "vec.npy", np.arange(5.0))
    np.save(tmp_path / "zero.npy", np.zeros((0, 4), np.float32))
    return out + [tmp_path / n for n in ("arch.npy", "obj.npy", "str.npy", "vec.npy", "zero.npy")]


def test_corrupt_and_truncated_files_give_one_line(tmp_path, capfd, rng):
    for path in _corrupt_files(tmp_path, rng):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            msg = one_line_error(capfd, lambda: open_raster(path, units="intensity").read(), str(path))
        assert msg.startswith(str(path)), msg


def test_real_scenes_have_documented_sizes(shared_sar_dir):
    files = list_sar_files(shared_sar_dir)
    sizes = {p.name: (1600, 605) if p.name == "real_sar_scene_a.png" else (760, 664) for p in files}
    assert sorted(sizes) == ["real_sar_scene_a.png", "real_sar_scene_b.png"]
    for path in files:
        raster, values, valid = read_quiet(path)
        w, h = sizes[path.name]
        assert values.shape == (h, w) and (raster.height, raster.width) == (h, w)
        assert raster.units == "log8" and values.dtype == np.float32 and valid.all()
        assert 0.0 <= values.min() < values.max() <= 255.0
        assert values.std() > 5.0  # a real, speckled scene, not a flat image
