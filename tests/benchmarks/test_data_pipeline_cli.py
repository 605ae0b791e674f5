"""python -m benchmarks.data_pipeline: bad input is one error line and exit status 2."""

from __future__ import annotations

import pytest

from benchmarks import data_pipeline
from sar_jax.core.cli import run_main


@pytest.mark.parametrize("argv,message", [
    ([], "error: --data PATH (or --make-archive DIR) is required\n"),
    (["--data", "/nonexistent/archive"], "error: data path /nonexistent/archive: no such file or folder\n"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    assert run_main(data_pipeline.main, argv) == 2
    assert capsys.readouterr().err == message


def test_a_bad_shuffle_block_names_the_key(tmp_path, capsys):
    (tmp_path / "a.npy").write_bytes(b"")  # never read: the config is refused first
    assert run_main(data_pipeline.main, ["--data", str(tmp_path), "--shuffle-block", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data.shuffle_block = 8 is invalid" in err
