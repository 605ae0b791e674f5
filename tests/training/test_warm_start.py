"""train.init_from / --init-from: a run starts from another run's best weights (fine-tuning), with a
fresh optimizer and epoch count; a different model section or a missing run is one clear error."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from sar_jax import train
from sar_jax.core.errors import SarJaxError
from sar_jax.core.rundir import read_log
from sar_jax.inference.run import load_run

FINE_LR = 1e-5


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("warm") / "source"
    train.main(["--config", "tiny", "--out", str(run), "--set", "train.epochs=1"])
    return run


def _max_diff(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda u, v: float(np.max(np.abs(np.asarray(u) - np.asarray(v)))),
                                            a, b)))


@pytest.mark.slow
def test_fine_tuning_starts_from_the_source_weights(source_run, tmp_path):
    tuned = tmp_path / "tuned"
    # another seed: a fresh initialisation would land far from the source
    train.main(["--config", "tiny", "--out", str(tuned), "--init-from", str(source_run),
                "--set", "train.epochs=1", "--set", f"train.lr={FINE_LR}", "--set", "train.seed=1"])
    src, new = load_run(source_run), load_run(tuned)
    steps = int(new.state.step)
    assert int(new.state.epoch) == 1 and [r["epoch"] for r in read_log(tuned)] == [1]
    assert steps == int(src.state.step)  # the step count starts afresh (same data, one epoch each)
    assert new.config["train"]["init_from"] == str(source_run)
    # Adam moves a parameter by at most ~3.2 lr a step; the source's own first epoch moved it far more
    assert _max_diff(new.variables["params"], src.variables["params"]) <= 3.2 * FINE_LR * steps
    from sar_jax.nn.registry import init_variables

    fresh = init_variables(new.model, jax.random.PRNGKey(1))["params"]
    assert _max_diff(fresh, src.variables["params"]) > 1000 * 3.2 * FINE_LR * steps
    # resuming continues from the run's own checkpoint: the source is no longer read
    moved = source_run.with_name("moved")
    source_run.rename(moved)
    try:
        train.main(["--resume", str(tuned), "--set", "train.epochs=2"])
    finally:
        moved.rename(source_run)
    assert [r["epoch"] for r in read_log(tuned)] == [1, 2]


@pytest.mark.slow
def test_a_different_model_section_is_refused(source_run, tmp_path):
    out = tmp_path / "other"
    with pytest.raises(SarJaxError, match=r"^train.init_from .*source: its model differs in "
                                          r"model.latent_channels \(4 there, 8 here\)"):
        train.main(["--config", "tiny", "--out", str(out), "--init-from", str(source_run),
                    "--set", "model.latent_channels=8"])
    assert not out.exists()  # refused before the run directory is made


def test_a_missing_source_run_is_one_error_line(tmp_path):
    with pytest.raises(SarJaxError, match=r"^train.init_from: checkpoint .*nowhere: no such run directory$"):
        train.main(["--config", "tiny", "--out", str(tmp_path / "run"), "--init-from", str(tmp_path / "nowhere")])


def test_init_from_with_resume_is_refused(tmp_path):
    with pytest.raises(SarJaxError, match="--init-from cannot be combined with --resume"):
        train.main(["--resume", str(tmp_path), "--init-from", str(tmp_path)])


def test_the_torch_reference_refuses_a_warm_start(tmp_path):
    from sar_torch_ref import train as torch_train

    with pytest.raises(SarJaxError, match=r"^train.init_from .*: the PyTorch reference trainer does not warm-start"):
        torch_train.main(["--config", "tiny", "--out", str(tmp_path / "run"), "--set",
                          f"train.init_from={str(tmp_path)!r}".replace("'", '"')])
