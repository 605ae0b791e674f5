"""Run-directory layout (sar_jax.core.rundir) and atomic writes (sar_jax.core.files)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from sar_jax.core.config import default_config
from sar_jax.core.errors import SarJaxError
from sar_jax.core.files import atomic_path, write_json_atomic
from sar_jax.core.rundir import (
    LOG_KEYS,
    append_log,
    default_run_dir,
    latest_run_dir,
    prepare_run_dir,
    read_log,
    truncate_log,
)


def _record(epoch, **extra):
    rec = {k: 0.5 for k in LOG_KEYS}
    rec["epoch"] = epoch
    rec.update(extra)
    return rec


def test_default_run_dir_name(tmp_path):
    path = default_run_dir("quickstart", tmp_path)
    assert path.parent == tmp_path
    assert re.fullmatch(r"quickstart-\d{8}-\d{6}", path.name)


def test_prepare_writes_config_and_refuses_another_run(tmp_path):
    config = default_config()
    run = tmp_path / "runs" / "a"
    assert prepare_run_dir(run, config, resume=False) == run
    assert json.loads((run / "config.json").read_text()) == config
    assert (run / "checkpoints").is_dir()
    assert not list(run.glob(".*.partial-*"))
    with pytest.raises(SarJaxError, match="already holds a run") as info:
        prepare_run_dir(run, config, resume=False)
    assert str(info.value).startswith(f"run_dir {run}:")
    assert "resume=True" in str(info.value) and "overwrite=True" in str(info.value)
    assert "\n" not in str(info.value)


def test_overwrite_replaces_the_old_run(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, default_config(), resume=False)
    append_log(run, _record(1))
    (run / "checkpoints" / "epoch_1").mkdir()
    (run / "tb").mkdir()
    (run / "tb" / "events.out").write_text("old")
    other = default_config()
    other["train"]["epochs"] = 3
    prepare_run_dir(run, other, resume=False, overwrite=True)
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3
    assert read_log(run) == []
    assert (run / "checkpoints").is_dir() and not any((run / "checkpoints").iterdir())
    assert not (run / "tb").exists()


def test_resume(tmp_path):
    with pytest.raises(SarJaxError, match="not a run directory"):
        prepare_run_dir(tmp_path / "nothing", default_config(), resume=True)
    run = tmp_path / "run"
    prepare_run_dir(run, default_config(), resume=False)
    append_log(run, _record(1))
    changed = default_config()
    changed["train"]["epochs"] = 7
    assert prepare_run_dir(run, changed, resume=True) == run
    assert json.loads((run / "config.json").read_text()) == default_config()  # untouched
    assert len(read_log(run)) == 1


def test_a_file_in_the_way_is_a_sar_jax_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SarJaxError, match="cannot write the run directory"):
        prepare_run_dir(tmp_path / "file", default_config(), resume=False)


def test_append_log_requires_the_keys(tmp_path):
    rec = _record(1)
    del rec["val_psnr"], rec["lr"]
    with pytest.raises(ValueError, match="val_psnr"):
        append_log(tmp_path, rec)
    assert not (tmp_path / "training.log").exists()


def test_append_and_read_log(tmp_path):
    append_log(tmp_path, _record(1, train_loss=float("nan"), val_loss=float("inf")))
    append_log(tmp_path, _record(np.int64(2), train_loss=np.float32(0.25), lr=np.float64(1e-4),
                                 note="extra keys are kept"))
    lines = (tmp_path / "training.log").read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["train_loss"] is None and first["val_loss"] is None  # valid JSON, no NaN
    assert "NaN" not in lines[0] and "Infinity" not in lines[0]
    assert second["train_loss"] == 0.25 and second["lr"] == 1e-4 and second["epoch"] == 2
    assert second["note"] == "extra keys are kept"
    assert read_log(tmp_path) == [first, second]
    assert read_log(tmp_path / "missing") == []


def test_truncate_log(tmp_path):
    for epoch in range(1, 6):
        append_log(tmp_path, _record(epoch))
    truncate_log(tmp_path, 3)
    assert [r["epoch"] for r in read_log(tmp_path)] == [1, 2, 3]
    truncate_log(tmp_path, 10)
    assert [r["epoch"] for r in read_log(tmp_path)] == [1, 2, 3]
    truncate_log(tmp_path, 0)
    assert read_log(tmp_path) == []
    assert not list(tmp_path.glob(".*.partial-*"))
    append_log(tmp_path, _record(1))
    assert [r["epoch"] for r in read_log(tmp_path)] == [1]


def test_log_cut_short_by_a_crash(tmp_path):
    append_log(tmp_path, _record(1))
    append_log(tmp_path, _record(2))
    with open(tmp_path / "training.log", "a") as fh:
        fh.write('{"epoch": 3, "train_lo')  # interrupted write, no newline
    assert [r["epoch"] for r in read_log(tmp_path)] == [1, 2]
    truncate_log(tmp_path, 2)
    assert (tmp_path / "training.log").read_text().count("\n") == 2
    (tmp_path / "training.log").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(SarJaxError, match="line 2 is not valid JSON"):
        read_log(tmp_path)


def test_write_json_atomic(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"a": [1, 2]})
    write_json_atomic(tmp_path / "x.json", {"b": None})
    assert json.loads((tmp_path / "x.json").read_text()) == {"b": None}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_path_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_latest_run_dir_takes_the_newest_timestamped_run_holding_the_file(tmp_path):
    for name in ("quickstart-20250101-000000", "quickstart-20250301-000000", "quickstart-20250201-000000",
                 "quickstart-old", "quickstart-20250401-000000"):
        (tmp_path / name).mkdir()
    for name in ("quickstart-20250101-000000", "quickstart-20250201-000000", "quickstart-old"):
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "quickstart-20250301-000000" / "checkpoints").mkdir()
    (tmp_path / "quickstart-20250301-000000" / "checkpoints" / "last.pt").write_bytes(b"")
    assert latest_run_dir("quickstart", tmp_path).name == "quickstart-20250201-000000"
    assert latest_run_dir("quickstart", tmp_path, "checkpoints/last.pt").name == "quickstart-20250301-000000"
    with pytest.raises(SarJaxError, match="no run of config 'baseline' holding config.json"):
        latest_run_dir("baseline", tmp_path)
