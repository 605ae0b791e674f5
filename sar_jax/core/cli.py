"""Command-line plumbing shared by every entry point: common flags, ``--version``, examples in ``--help``
and error handling."""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sar_jax import __version__
from sar_jax.core.errors import SarJaxError

#: What ``--units`` / ``data.units`` accepts.
UNITS = ("auto", "intensity", "amplitude", "db", "log8")


def add_version_arg(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``PROG (sar-jax VERSION)`` and exit 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s (sar-jax {__version__})")


def add_examples(parser: argparse.ArgumentParser, *examples: str) -> None:
    """Show ``examples`` (command lines, one a line) under ``--help``, as written."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "example:\n" + "\n".join(f"  {line}" for line in examples)


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """The flags both trainers share: --config, --data, --out, --set, --overwrite."""
    parser.add_argument("--config", default="baseline",
                        help="config name in configs/ (e.g. baseline, quickstart) or a JSON path")
    parser.add_argument("--data", default=None, help="SAR file or folder (switches data.source to files)")
    parser.add_argument("--out", default=None, help="run directory (default runs/<config>-<time>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key, value parsed as JSON (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out")


def rename_params(message: str, **flags: str) -> str:
    """``message`` with command-line flags in place of the library parameter names it uses: library
    messages start with the parameter they are about (``run_dir PATH: ...``) and write a parameter
    inside a sentence as ``name=VALUE`` (``name=True`` for a switch); ``rename_params(m, run_dir="--out",
    band="--band")`` turns those into ``--out PATH: ...``, ``--band 3`` and ``--overwrite``."""
    for param, flag in flags.items():
        if re.match(rf"{re.escape(param)}\b(?!=)", message):
            message = flag + message[len(param):]
        message = re.sub(rf"(?<![\w.]){re.escape(param)}=True\b", flag, message)
        message = re.sub(rf"(?<![\w.-]){re.escape(param)}=", flag + " ", message)
    return message


@contextmanager
def flag_names(**flags: str) -> Iterator[None]:
    """Re-raise a SarJaxError raised inside (a ``with`` block or a decorated ``main``) with the
    command-line flags in place of the library parameter names it uses (:func:`rename_params`)."""
    try:
        yield
    except SarJaxError as exc:
        message = rename_params(str(exc), **flags)
        if message == str(exc):
            raise
        raise SarJaxError(message) from None


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def _quiet_library_logs() -> None:
    """Orbax logs routine notes through absl at WARNING level; users see only errors."""
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main``; a SarJaxError becomes one line on stderr and exit status 2."""
    warnings.showwarning = _warning_line
    _quiet_library_logs()
    try:
        return main(argv)
    except SarJaxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def process_share(num_processes: int | None, process_id: int | None) -> tuple[int, int]:
    """``(index, count)`` of this process in work split with no coordination: ``--process-id`` /
    ``--num-processes`` where given, else a SLURM job array's variables, else ``(0, 1)``."""
    env = os.environ
    if num_processes is None and "SLURM_ARRAY_TASK_COUNT" in env:
        num_processes = int(env["SLURM_ARRAY_TASK_COUNT"])
    if process_id is None and "SLURM_ARRAY_TASK_ID" in env:
        process_id = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
    n, i = num_processes or 1, process_id or 0
    if n < 1 or not 0 <= i < n:
        raise SarJaxError(f"--process-id {i} of --num-processes {n}: expected 0 <= process id < number of processes")
    return i, n


def add_units_arg(parser: argparse.ArgumentParser, what: str, complex_to: str = "the checkpoint's units") -> None:
    """``--units``: what the values of ``what`` (e.g. ``--data``) are, as ``data.units``; ``complex_to``: what
    ``auto`` makes of complex data."""
    parser.add_argument("--units", default="auto", choices=UNITS,
                        help=f"what {what} values are (default auto: uint8 -> log8, uint16 -> amplitude, "
                             f"complex -> {complex_to}, float from the file's metadata)")


def add_band_strict_args(parser: argparse.ArgumentParser) -> None:
    """``--band`` and ``--strict``, as ``data.band`` and ``data.strict``."""
    parser.add_argument("--band", type=int, default=None, help="band of a multi-band raster")
    parser.add_argument("--strict", action="store_true",
                        help="refuse NaN/Inf pixels and RGB images instead of treating them as no-data / grayscale")


def add_input_units_args(parser: argparse.ArgumentParser, what: str) -> None:
    """``--units`` and ``--allow-clipping``, shared by the commands that read SAR inputs (``what``: the
    inputs, e.g. ``--data``)."""
    add_units_arg(parser, what)
    parser.add_argument("--allow-clipping", action="store_true",
                        help=f"accept {what} with > 5%% of their valid pixels outside the checkpoint's clip range")
