"""SAR readers (sar_jax.data.readers): GeoTIFF, NPY, PNG, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from sar_jax.core.errors import SarJaxError
from sar_jax.data.readers import list_sar_files, read_sar

H, W = 24, 40


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _read_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_sar(path, **kw)


def test_tiff_real_float32_is_amplitude(tmp_path, rng):
    arr = rng.gamma(2.0, 0.5, (H, W)).astype(np.float32)
    tifffile.imwrite(tmp_path / "amp.tif", arr)
    img = _read_quiet(tmp_path / "amp.tif")
    assert img.kind == "amplitude" and img.data.dtype == np.float32 and img.data.shape == (H, W)
    np.testing.assert_array_equal(img.data, arr)
    assert img.path.endswith("amp.tif")


def test_tiff_complex_slc_gives_abs(tmp_path, rng):
    slc = (rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))).astype(np.complex64)
    tifffile.imwrite(tmp_path / "slc.tiff", slc)
    img = _read_quiet(tmp_path / "slc.tiff")
    assert img.kind == "amplitude" and img.data.dtype == np.float32 and img.data.shape == (H, W)
    np.testing.assert_allclose(img.data, np.abs(slc), rtol=1e-6)


@pytest.mark.parametrize("layout", ["bands_first", "bands_last"])
def test_tiff_iq_pair_gives_amplitude(tmp_path, rng, layout):
    i = rng.standard_normal((H, W)).astype(np.float32)
    q = rng.standard_normal((H, W)).astype(np.float32)
    arr = np.stack([i, q]) if layout == "bands_first" else np.stack([i, q], axis=-1)
    tifffile.imwrite(tmp_path / "iq.tif", arr)
    img = _read_quiet(tmp_path / "iq.tif")
    assert img.kind == "amplitude" and img.data.shape == (H, W)
    np.testing.assert_allclose(img.data, np.sqrt(i.astype(np.float64) ** 2 + q ** 2), rtol=1e-6)


def test_tiff_band_selection_and_too_many_bands(tmp_path, rng):
    arr = rng.uniform(0.1, 1.0, (3, H, W)).astype(np.float32)
    tifffile.imwrite(tmp_path / "b3.tif", arr, photometric="minisblack")
    for band in range(3):
        np.testing.assert_array_equal(_read_quiet(tmp_path / "b3.tif", band=band).data, arr[band])
    with pytest.raises(SarJaxError, match=r"3 bands; choose one with data\.band \(0\.\.2\)"):
        read_sar(tmp_path / "b3.tif")
    with pytest.raises(SarJaxError, match=r"data\.band = 3 but the raster has 3 bands"):
        read_sar(tmp_path / "b3.tif", band=3)
    # band selection also picks one half of an I/Q pair instead of combining it
    iq = rng.uniform(0.1, 1.0, (2, H, W)).astype(np.float32)
    tifffile.imwrite(tmp_path / "iq.tif", iq)
    np.testing.assert_array_equal(_read_quiet(tmp_path / "iq.tif", band=1).data, iq[1])


def test_tiff_single_band_rejects_band_1(tmp_path, rng):
    tifffile.imwrite(tmp_path / "one.tif", rng.uniform(0, 1, (H, W)).astype(np.float32))
    assert _read_quiet(tmp_path / "one.tif", band=0).data.shape == (H, W)
    with pytest.raises(SarJaxError, match="single band"):
        read_sar(tmp_path / "one.tif", band=1)


def test_tiff_uint8_is_log8(tmp_path, rng):
    arr = rng.integers(0, 256, (H, W), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", arr)
    img = _read_quiet(tmp_path / "v.tif")
    assert img.kind == "log8"
    np.testing.assert_array_equal(img.data, arr.astype(np.float32))


def test_npy_real_complex_and_iq(tmp_path, rng):
    real = rng.uniform(0, 2, (H, W)).astype(np.float64)
    np.save(tmp_path / "real.npy", real)
    img = _read_quiet(tmp_path / "real.npy")
    assert img.kind == "amplitude" and img.data.dtype == np.float32
    np.testing.assert_allclose(img.data, real, rtol=1e-6)

    cplx = (rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))).astype(np.complex128)
    np.save(tmp_path / "cplx.npy", cplx)
    img = _read_quiet(tmp_path / "cplx.npy")
    assert img.kind == "amplitude" and img.data.shape == (H, W)
    np.testing.assert_allclose(img.data, np.abs(cplx), rtol=1e-6)

    iq = rng.standard_normal((H, W, 2)).astype(np.float32)
    np.save(tmp_path / "iq.npy", iq)
    img = _read_quiet(tmp_path / "iq.npy")
    np.testing.assert_allclose(img.data, np.hypot(iq[..., 0], iq[..., 1]), rtol=1e-6)
    np.save(tmp_path / "iq_first.npy", np.moveaxis(iq, -1, 0))
    np.testing.assert_allclose(_read_quiet(tmp_path / "iq_first.npy").data, img.data, rtol=1e-6)


def test_npy_negative_real_values_are_refused(tmp_path, rng):
    np.save(tmp_path / "neg.npy", rng.standard_normal((H, W)))
    with pytest.raises(SarJaxError, match="negative values"):
        read_sar(tmp_path / "neg.npy")


def test_png_8bit_is_log8(tmp_path, rng):
    arr = rng.integers(0, 256, (H, W), dtype=np.uint8)
    arr[0, 0], arr[0, 1] = 0, 255
    Image.fromarray(arr).save(tmp_path / "g.png")
    img = _read_quiet(tmp_path / "g.png")
    assert img.kind == "log8" and img.data.dtype == np.float32 and img.data.shape == (H, W)
    assert img.data.min() == 0.0 and img.data.max() == 255.0
    np.testing.assert_array_equal(img.data, arr)


def test_rgb_png_is_converted_with_a_warning_or_refused_when_strict(tmp_path, rng):
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.warns(UserWarning, match=r"colour image \(mode RGB\) converted to grayscale"):
        img = read_sar(tmp_path / "rgb.png")
    assert img.kind == "log8" and img.data.shape == (H, W)
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(img.data, expected)
    with pytest.raises(SarJaxError, match="strict"):
        read_sar(tmp_path / "rgb.png", strict=True)


@pytest.mark.parametrize("ext", [".npy", ".tif"])
def test_nan_inf_replaced_with_warning_or_refused(tmp_path, rng, ext):
    arr = rng.uniform(1.0, 2.0, (H, W)).astype(np.float32)
    arr[3, 4], arr[5, 6], arr[7, 8] = np.nan, np.inf, -np.inf
    path = tmp_path / f"bad{ext}"
    np.save(path, arr) if ext == ".npy" else tifffile.imwrite(path, arr)
    with pytest.warns(UserWarning, match="replaced 3 NaN/Inf pixels"):
        img = read_sar(path)
    assert np.isfinite(img.data).all()
    finite = np.isfinite(arr)
    np.testing.assert_array_equal(img.data[finite], arr[finite])
    assert np.all(img.data[~finite] == np.float32(np.median(arr[finite])))
    with pytest.raises(SarJaxError, match="3 NaN/Inf pixels"):
        read_sar(path, strict=True)
    np.save(tmp_path / "allnan.npy", np.full((H, W), np.nan))
    with pytest.raises(SarJaxError, match="every pixel"):
        read_sar(tmp_path / "allnan.npy")


def test_missing_and_unsupported_paths(tmp_path):
    with pytest.raises(SarJaxError, match="no such file"):
        read_sar(tmp_path / "absent.tif")
    with pytest.raises(SarJaxError, match="no such file or folder"):
        list_sar_files(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SarJaxError, match="unsupported extension '.txt'"):
        read_sar(tmp_path / "notes.txt")
    with pytest.raises(SarJaxError, match="unsupported extension"):
        list_sar_files(tmp_path / "notes.txt")
    with pytest.raises(SarJaxError, match="no SAR files"):
        list_sar_files(tmp_path)  # only a .txt inside
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SarJaxError, match="no SAR files"):
        list_sar_files(empty)


def test_list_sar_files_sorted_and_filtered(tmp_path):
    for name in ("b.PNG", "a.tif", "c.npy", "d.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_sar_files(tmp_path)] == ["a.tif", "b.PNG", "c.npy"]


def _corrupt_files(tmp_path, rng):
    arr = rng.uniform(0, 1, (H, W)).astype(np.float32)
    tifffile.imwrite(tmp_path / "ok.tif", arr)
    np.save(tmp_path / "ok.npy", arr)
    Image.fromarray((arr * 255).astype(np.uint8)).save(tmp_path / "ok.png")
    out = []
    for ext in (".tif", ".npy", ".png"):
        raw = (tmp_path / f"ok{ext}").read_bytes()
        for tag, data in (("trunc", raw[: len(raw) // 2]), ("head", raw[:12]), ("empty", b""),
                          ("junk", raw[:8] + b"\x00\xff" * 40)):
            p = tmp_path / f"{tag}{ext}"
            p.write_bytes(data)
            out.append(p)
    np.savez(tmp_path / "arch.npz", a=arr)  # an archive renamed to .npy
    (tmp_path / "arch.npy").write_bytes((tmp_path / "arch.npz").read_bytes())
    out.append(tmp_path / "arch.npy")
    np.save(tmp_path / "obj.npy", np.array([1, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "str.npy", np.array([["ab"]]))
    np.save(tmp_path / "vec.npy", np.arange(5.0))
    np.save(tmp_path / "zero.npy", np.zeros((0, 4), np.float32))
    return out + [tmp_path / n for n in ("obj.npy", "str.npy", "vec.npy", "zero.npy")]


def test_corrupt_files_raise_only_sar_jax_error(tmp_path, rng):
    for path in _corrupt_files(tmp_path, rng):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(SarJaxError) as info:
                read_sar(path)
        assert str(info.value).startswith(str(path)), (path, info.value)
        assert "\n" not in str(info.value)


def test_real_scenes_have_documented_sizes(shared_sar_dir):
    files = list_sar_files(shared_sar_dir)
    sizes = {p.name: (1600, 605) if p.name == "real_sar_scene_a.png" else (760, 664) for p in files}
    assert sorted(sizes) == ["real_sar_scene_a.png", "real_sar_scene_b.png"]
    for path in files:
        img = _read_quiet(path)
        w, h = sizes[path.name]
        assert img.data.shape == (h, w)
        assert img.kind == "log8" and img.data.dtype == np.float32
        assert 0.0 <= img.data.min() < img.data.max() <= 255.0
        assert img.data.std() > 5.0  # a real, speckled scene, not a flat image
