"""sar_jax.inference: loading a run (and PyTorch checkpoints pointed at conversion), jitted calls, units."""

from __future__ import annotations

import numpy as np
import pytest

from sar_jax.core.errors import SarJaxError
from sar_jax.inference import run as inference


def test_units_intensity_amplitude_and_db_share_the_db_scale_log8_does_not():
    lin = {"mode": "intensity", "vmin": -20.0, "vmax": 5.0, "floor": 1e-6, "percentiles": [1, 99]}
    for units in ("intensity", "amplitude", "db"):
        assert inference.input_params(lin, units)["mode"] == units
    with pytest.raises(SarJaxError, match="log8"):
        inference.input_params(lin, "log8")
    log8 = dict(lin, mode="log8", vmin=10.0, vmax=240.0)
    assert inference.input_params(log8, "log8")["mode"] == "log8"
    with pytest.raises(SarJaxError, match="log8"):
        inference.input_params(log8, "amplitude")


@pytest.mark.parametrize("mode,expected", [("intensity", "intensity"), ("amplitude", "amplitude")])
def test_complex_input_follows_the_checkpoints_units(tmp_path, mode, expected):
    z = (np.random.default_rng(0).normal(size=(32, 32)) + 1j * np.random.default_rng(1).normal(size=(32, 32)))
    np.save(tmp_path / "slc.npy", z.astype(np.complex64))
    params = {"mode": mode, "vmin": -20.0, "vmax": 5.0, "floor": 1e-6, "percentiles": [1, 99]}
    raster, p = inference.open_input(tmp_path / "slc.npy", params)
    values, _ = raster.read()
    want = np.abs(z) ** 2 if expected == "intensity" else np.abs(z)
    assert p["mode"] == raster.units == expected and raster.phase_dropped and raster.bits_per_pixel == 64
    np.testing.assert_allclose(values, want, rtol=1e-5)
    assert float(values.mean()) == pytest.approx(float(want.mean()), rel=1e-5)  # |z|^2 has mean 2 here, not |z|'s


def test_clipping_is_measured_and_refused_with_both_ranges():
    params = {"mode": "intensity", "vmin": -20.0, "vmax": 5.0, "floor": 1e-6, "percentiles": [1, 99]}
    inside = np.full(1000, 1.0)
    assert inference.check_clipping(inside, params, "x", False) == 0.0
    hot = np.concatenate([np.full(900, 1e4), inside[:100]])  # SLC-like 40 dB values against a [-20, 5] dB fit
    pattern = r"x: 90.0% .* \[-20.0, 5.0\] dB \(the input spans \[.*40.0\] dB.*--allow-clipping"
    with pytest.raises(SarJaxError, match=pattern):
        inference.check_clipping(hot, params, "x", False)
    with pytest.warns(UserWarning, match="90.0%"):
        assert inference.check_clipping(hot, params, "x", True) == pytest.approx(0.9)


def test_load_run_restores_the_best_checkpoint(intensity_run, intensity_loaded):
    run = intensity_loaded
    assert run.config["model"]["base_channels"] == 4 and run.preprocessing_params["mode"] == "intensity"
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    x_hat, z = inference.reconstruct_fn(run.model)(run.variables, x)
    assert x_hat.shape == x.shape and z.shape == (2, 2, 2, 4)
    z2 = inference.encode_fn(run.model)(run.variables, x)
    np.testing.assert_allclose(np.asarray(inference.decode_fn(run.model)(run.variables, z2)), x_hat, atol=1e-6)


def test_load_run_bad_paths(tmp_path):
    with pytest.raises(SarJaxError, match="no such run directory"):
        inference.load_run(tmp_path / "missing")
    with pytest.raises(SarJaxError, match="checkpoints"):
        inference.load_run(tmp_path)


@pytest.mark.parametrize("layout", ["pt_file", "torch_run_dir"])
def test_torch_checkpoints_name_the_conversion_command(tmp_path, layout):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"torch")
    path = tmp_path / "run" / "checkpoints" / "best.pt" if layout == "pt_file" else tmp_path / "run"
    with pytest.raises(SarJaxError) as err:
        inference.load_run(path)
    msg = str(err.value)
    pt = tmp_path / "run" / "checkpoints" / "best.pt"
    assert "PyTorch" in msg and f"python -m sar_jax.convert --from-torch {pt} --out" in msg
