"""The installed commands: each ``[project.scripts]`` entry runs the same ``main`` as ``python -m sar_jax.<tool>``,
``--version`` prints the package version, and ``--help`` ends with an example that parses."""

from __future__ import annotations

import importlib
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import sar_jax

tomllib = pytest.importorskip("tomllib")

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
#: command -> (module ``python -m`` runs, module that implements ``main``)
TOOLS = {
    "sar-jax-train": ("sar_jax.train", "sar_jax.training.loop"),
    "sar-jax-evaluate": ("sar_jax.evaluate", "sar_jax.inference.evaluate"),
    "sar-jax-reconstruct": ("sar_jax.reconstruct", "sar_jax.inference.reconstruct"),
    "sar-jax-convert": ("sar_jax.convert", "sar_jax.parity.checkpoints"),
    "sar-jax-parity": ("sar_jax.parity.__main__", "sar_jax.parity.report"),
    "sar-jax-sweep": ("sar_jax.sweep", "sar_jax.training.sweep"),
}
NEEDS_TORCH = ("sar-jax-convert", "sar-jax-parity")


def _entry(command: str):
    """(module, function) the scripts table names for ``command``, imported."""
    if command in NEEDS_TORCH:
        pytest.importorskip("torch")
    module_name, func = PYPROJECT["project"]["scripts"][command].split(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, func)


def _exit(entry, monkeypatch, capsys, *flags: str) -> tuple[int, str]:
    """Run a console-script entry (it reads ``sys.argv``) to its SystemExit: (code, stdout)."""
    monkeypatch.setattr(sys, "argv", ["sar-jax-x", *flags])
    with pytest.raises(SystemExit) as exc:
        entry()
    return exc.value.code, capsys.readouterr().out


def test_the_scripts_table_lists_every_tool():
    assert sorted(PYPROJECT["project"]["scripts"]) == sorted(TOOLS)
    assert PYPROJECT["project"]["version"] == sar_jax.__version__


@pytest.mark.parametrize("command", TOOLS)
def test_the_script_calls_the_python_m_main(command, monkeypatch):
    module, entry = _entry(command)
    python_m, implementation = TOOLS[command]
    assert module.__name__ == python_m
    assert module.main is importlib.import_module(implementation).main
    calls = []
    monkeypatch.setattr(module, "main", lambda argv: calls.append(argv) or 7)
    assert entry() == 7 and calls == [None]  # None: main parses sys.argv, as python -m does


@pytest.mark.parametrize("command", TOOLS)
def test_version_prints_the_package_version(command, monkeypatch, capsys):
    module, entry = _entry(command)
    prog = "python -m " + TOOLS[command][0].removesuffix(".__main__")
    assert _exit(entry, monkeypatch, capsys, "--version") == (0, f"{prog} (sar-jax {sar_jax.__version__})\n")


@pytest.mark.parametrize("command", TOOLS)
def test_help_ends_with_an_example_that_parses(command, monkeypatch, capsys):
    module, entry = _entry(command)
    code, out = _exit(entry, monkeypatch, capsys, "--help")
    prog = "python -m " + TOOLS[command][0].removesuffix(".__main__")
    assert code == 0 and out.startswith(f"usage: {prog}")
    _, example = out.rstrip("\n").rsplit("\nexample:\n  ", 1)
    assert "\n" not in example and example.startswith(prog + " ")
    words = shlex.split(example)[3:]
    args = vars(module.setup_args().parse_args(words))  # no SystemExit: its flags exist and take those values
    given = [str(x) for v in args.values() for x in (v if isinstance(v, list) else [v])]
    for flag, value in zip(words, words[1:]):
        if flag.startswith("--") and not value.startswith("--"):
            assert value in given, (flag, value)


@pytest.mark.slow
def test_the_installed_command_runs():
    script = Path(sys.executable).with_name("sar-jax-train")
    if not script.exists():
        pytest.skip(f"{script} is not installed (make install / pip install -e .)")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (0, f"python -m sar_jax.train (sar-jax {sar_jax.__version__})\n")
