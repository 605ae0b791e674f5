"""Several processes on loopback (jax.distributed, gloo), one or two fake CPU devices each: the
same training as one process holding the same global batch, checkpoints that resume on other
layouts, and failures that end every process with one ``error:`` line."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time

import numpy as np
import pytest

from sar_jax.inference.run import load_run
from tests.training.distributed._helpers import TINY, WORKER, finish, rel, start_processes, train_cli
from tests.training.distributed.test_data_parallel import assert_same_epochs

pytestmark = pytest.mark.slow  # every test here starts processes
WAITER = WORKER.with_name("_waiter.py")


def only_error_line(stderr: str) -> str:
    """The process printed exactly one line, ``error: ...`` (no traceback, no runtime log)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("processes,devices", [(2, 1), (2, 2), (4, 1)])
def test_processes_match_one_process_with_the_same_global_batch(single_process, tmp_path, processes, devices):
    out, mesh = tmp_path / "multi.npz", processes * devices
    procs = start_processes(["--fake-devices", str(devices), "--meshes", str(mesh), "--steps", "5", "--out",
                             str(out), "--initial-state", single_process["initial_state"]], processes, devices,
                            script=[str(WORKER)])
    results = finish(procs)
    assert [code for code, _ in results] == [0] * processes, results
    multi = dict(np.load(out))
    assert rel(multi[f"loss_{mesh}"], single_process["loss_1"]) <= 1e-5
    assert float(np.max(np.abs(multi[f"params_{mesh}"] - single_process["params_1"]))) <= 1e-5


def test_start_failures_end_every_process_with_one_error_line(tmp_path):
    # process 1 alone: nobody answers at the coordinator's address
    alone = start_processes([*TINY, "--out", str(tmp_path / "alone")], 1, 1, timeout=3,
                            num_processes=[2], ids=[1])
    # process 0 says 2 processes, process 1 says 3
    mismatch = start_processes([*TINY, "--out", str(tmp_path / "mismatch")], 2, 1, timeout=30,
                               num_processes=[2, 3])
    [(code, err)] = finish(alone, timeout=120)  # hang guard; each ends within --timeout after its imports
    assert code == 2
    assert re.fullmatch(r"error: coordinator 127\.0\.0\.1:\d+: no process 0 answered within 3 s .*",
                        only_error_line(err))
    for code, err in finish(mismatch, timeout=120):
        assert code == 2
        assert only_error_line(err) == "error: process 1 was started with num_processes=3, process 0 with 2"
    assert not (tmp_path / "alone").exists() and not (tmp_path / "mismatch").exists()


def test_a_lost_process_ends_every_other_one_within_seconds():
    procs = start_processes([], 3, 1, script=[str(WAITER)])
    for p in procs:  # gloo notes its connections on stdout first
        assert "ready\n" in iter(p.stdout.readline, "")
    os.kill(procs[1].pid, signal.SIGKILL)  # process 0 loses a peer; process 2 then loses process 0
    killed_at = time.monotonic()
    survivors = finish([procs[0], procs[2]], timeout=120)
    waited = time.monotonic() - killed_at
    assert procs[1].wait() == -signal.SIGKILL
    assert all(code != 0 for code, _ in survivors)
    first, last = (only_error_line(err) for _, err in survivors)
    # whichever notices first: the process link, or the collective in flight
    assert first.startswith(("error: process 1 stopped or became unreachable; stopping process 0 of 3",
                             "error: process 0 of 3: "))
    assert last.startswith(("error: process 0 (the coordinator) stopped or became unreachable; stopping "
                            "process 2 of 3", "error: process 2 of 3: "))
    assert waited < 60, waited  # hang guard; measured about 1 s


def _two_processes_past_their_first_checkpoint(run) -> list:
    """A long tiny run of two processes into ``run``, returned once its first checkpoint exists."""
    procs = start_processes([*TINY, "--out", str(run), "--set", "train.epochs=100"], 2, 1)
    deadline = time.monotonic() + 600
    while not any(p.name.isdigit() for p in (run / "checkpoints").glob("*")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.2)
    return procs


def test_a_run_of_two_processes_killed_mid_training_resumes_exactly_on_one_and_on_two_devices(
        straight_run, tmp_path):
    run = tmp_path / "run"
    procs = _two_processes_past_their_first_checkpoint(run)
    os.kill(procs[1].pid, signal.SIGKILL)
    [(code, err)] = finish([procs[0]], timeout=120)
    assert code == 2
    assert only_error_line(err).startswith(("error: process 1 stopped or became unreachable; stopping process 0",
                                            "error: process 0 of 2: "))
    epoch = load_run(run, "latest").epoch  # the last complete checkpoint loads
    assert epoch in (1, 2)  # the kill follows the first checkpoint by at most 0.2 s
    two_devices = tmp_path / "two_devices"
    shutil.copytree(run, two_devices)
    train_cli(["--resume", str(run), "--set", "train.epochs=3"], devices=1)
    train_cli(["--resume", str(two_devices), "--set", "train.epochs=3"], devices=2)
    assert_same_epochs(run, straight_run)
    assert_same_epochs(two_devices, straight_run)


def test_sigint_to_one_process_stops_every_process_at_one_step_and_resumes_exactly(straight_run, tmp_path):
    run = tmp_path / "run"
    procs = _two_processes_past_their_first_checkpoint(run)
    os.kill(procs[1].pid, signal.SIGINT)  # only one process hears it (a worst case: srun signals them all)
    results = finish(procs, timeout=180)
    assert [code for code, _ in results] == [130, 130], results
    assert "SIGINT: stopped at epoch" in results[0][1] and "--resume" in results[0][1]
    assert "Traceback" not in results[0][1] + results[1][1]
    stopped = load_run(run, "latest")  # the checkpoint both wrote at the agreed step loads
    assert stopped.epoch <= 3
    resumed = start_processes([*TINY, "--resume", str(run), "--set", "train.epochs=3"], 2, 1)
    assert [code for code, _ in finish(resumed)] == [0, 0]
    assert_same_epochs(run, straight_run)
