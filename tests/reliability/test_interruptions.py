"""SIGINT/SIGTERM, SIGKILL mid-checkpoint, NaN steps and bitwise reproducibility of sar_jax.train."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sar_jax.core.config import load_config
from sar_jax.core.errors import SarJaxError
from sar_jax.data.pipeline import build_datasets
from sar_jax.nn.models import SARAutoencoder
from sar_jax.training import checkpointing
from sar_jax.training import loop as train
from sar_jax.training.state import create_train_state

pytestmark = pytest.mark.slow  # training runs in subprocesses, signals, resumes

TIMING_KEYS = {"epoch_seconds", "train_images_per_second", "data_wait_seconds", "train_data_wait_fraction"}


def _state(run: Path, which: str = "latest"):
    config = json.loads((run / "config.json").read_text())
    template = create_train_state(SARAutoencoder.from_config(config["model"]), config)
    return checkpointing.restore(run, template, which)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "training.log").read_text().splitlines()]


def _max_diff(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v))), a, b)))


def _start(tiny_args, run: Path, epochs: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sar_jax.train", *tiny_args, "--out", str(run),
                             "--set", f"train.epochs={epochs}", "--set", "data.num_scenes=8", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _wait_for_epochs(run: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run / "training.log").exists() and len(_log(run)) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("training did not progress")


@pytest.mark.parametrize("sig,code,workers", [(signal.SIGINT, 130, 1), (signal.SIGTERM, 143, 0)])
def test_signal_checkpoints_and_resume_continues_identically(tmp_path, tiny_args, sig, code, workers):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    proc = _start(tiny_args, stopped, 3, "--set", f"data.workers={workers}")
    _wait_for_epochs(stopped, 1, proc)
    time.sleep(0.3)  # land inside epoch 2
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert f"python -m sar_jax.train --resume {stopped}" in err
    interrupted_at = checkpointing.read_metadata(stopped, "latest")
    assert subprocess.run([sys.executable, "-m", "sar_jax.train", "--resume", str(stopped)],
                          capture_output=True, timeout=600).returncode == 0
    assert subprocess.run([sys.executable, "-m", "sar_jax.train", *tiny_args, "--out", str(straight),
                           "--set", "train.epochs=3", "--set", "data.num_scenes=8"],
                          capture_output=True, timeout=600).returncode == 0  # in-process: the same batches
    a, b = _log(straight), _log(stopped)
    assert [r["epoch"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k not in TIMING_KEYS} == pytest.approx(
            {k: v for k, v in rb.items() if k not in TIMING_KEYS}, rel=1e-6)
    sa, sb = _state(straight)[0], _state(stopped)[0]
    assert int(sa.step) == int(sb.step)
    assert _max_diff((sa.params, sa.opt_state), (sb.params, sb.opt_state)) <= 1e-6
    assert interrupted_at["epoch"] in (1, 2)  # mid-epoch 2, or end of epoch 1/2 if it landed in validation


def _kill_inside_a_save(proc: subprocess.Popen, ckpt: Path, timeout: float = 300) -> bool:
    """SIGKILL ``proc`` as soon as Orbax's temporary checkpoint folder appears; returns whether
    the folder was still there after the kill (i.e. the process died inside the save)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_dir() and any("tmp" in p.name for p in ckpt.iterdir()):
            proc.kill()
            proc.wait()
            return any("tmp" in p.name for p in ckpt.iterdir())
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    return False


def test_sigkill_inside_a_checkpoint_write_keeps_a_loadable_checkpoint(tmp_path, tiny_args):
    run = tmp_path / "run"
    killed_mid_save = 0
    proc = _start(tiny_args, run, epochs=40)
    _wait_for_epochs(run, 1, proc)  # one complete checkpoint exists
    for _ in range(6):
        killed_mid_save += _kill_inside_a_save(proc, run / "checkpoints")
        state, meta = _state(run)  # the previous checkpoint stays loadable
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state.params))
        if killed_mid_save >= 2:
            break
        proc = subprocess.Popen([sys.executable, "-m", "sar_jax.train", "--resume", str(run)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert killed_mid_save >= 1, "never caught the process inside a checkpoint write"
    done = len(_log(run))
    proc = subprocess.run([sys.executable, "-m", "sar_jax.train", "--resume", str(run), "--set",
                           f"train.epochs={done + 1}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["epoch"] for r in _log(run)] == list(range(1, done + 2))


def test_nan_stops_at_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_args, monkeypatch):
    """A NaN injected in epoch 2 through the real train step: stop naming the step, no NaN saved."""
    real = train.compile_steps
    per_epoch = len(build_datasets(load_config("tiny", ["data.num_scenes=8"])[0]).windows["train"]) // 4
    bad = per_epoch + 3  # third step of epoch 2

    def poisoned(model, config, preprocessing):
        steps = real(model, config, preprocessing)
        step_fn, calls = steps["train_step"], [0]

        def train_step(state, batch):
            calls[0] += 1
            return step_fn(state, batch * jnp.nan if calls[0] == bad else batch)

        return dict(steps, train_step=train_step)

    monkeypatch.setattr(train, "compile_steps", poisoned)
    run = tmp_path / "run"
    with pytest.raises(SarJaxError, match=rf"NaN/Inf at epoch 2, step {bad}\b"):
        train.main(tiny_args + ["--out", str(run), "--set", "train.epochs=3", "--set", "data.num_scenes=8"])
    state, meta = _state(run)
    assert meta["epoch"] == 1 and len(_log(run)) == 1
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves((state.params, state.opt_state)))


def test_same_seed_gives_bitwise_identical_runs(tmp_path, tiny_args):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        train.main(tiny_args + ["--out", str(run), "--set", "train.epochs=2"])
    logs = [[{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in _log(run)] for run in runs]
    assert logs[0] == logs[1]  # exact equality, not approx
    sa, sb = (_state(run)[0] for run in runs)
    for u, v in zip(jax.tree.leaves(sa), jax.tree.leaves(sb)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
