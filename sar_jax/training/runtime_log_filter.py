"""``python -m sar_jax.training.runtime_log_filter PREFIX``: the stderr of one process of a
multi-process run passes through here (stdin -> stdout), so that a failure of JAX's distributed
runtime still ends in one ``error:`` line.

Hand-written because JAX 0.10.2's coordination client ends the process itself, with
``LOG(FATAL)`` and a C++ stack dump, as soon as it learns that another process or the
coordinator is gone (or that it cannot connect), often before Python can react; nothing in the
process can print afterwards, so this separate process does. It forwards everything until the
runtime logs a problem (a glog line at level W, E or F; the lines after it may continue that
message), then only ``error:`` and ``warning:`` lines; at the end, if the runtime logged a fatal
error and no ``error:`` line came, it prints one naming the cause. No JAX import: it starts in
milliseconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

GLOG = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w./-]+:\d+\] ?(.*)")
RECORD = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


class RuntimeLogFilter:
    """Feed bytes in, get the bytes to show out; :meth:`final` gives the closing line, if any."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.pending = prefix, b""
        self.suppressing, self.error_shown, self.fatal = False, False, None

    def feed(self, data: bytes, *, end: bool = False) -> bytes:
        """Filter complete records (lines or ``\\r``-terminated progress updates) of ``data``."""
        self.pending += data
        out = []
        for match in RECORD.finditer(self.pending):
            record = match.group()
            if not end and not record.endswith((b"\n", b"\r")):
                self.pending = record
                break
            out.append(self._record(record))
        else:
            self.pending = b""
        return b"".join(out)

    def _record(self, record: bytes) -> bytes:
        if record.startswith(b"error: "):
            self.error_shown = True
            return record
        log = GLOG.match(record)
        if log:
            if log.group(1) != b"I":  # lines after it may be the message's continuation: hide them
                self.suppressing = True
            if log.group(1) == b"F" and self.fatal is None:
                message = log.group(2).decode(errors="replace")
                self.fatal = message.split("absl::Status: ", 1)[-1].strip()
            return b""
        return b"" if self.suppressing and not record.startswith(b"warning: ") else record

    def final(self) -> bytes:
        """The ``error:`` line for a fatal runtime error that no ``error:`` line explained."""
        if self.fatal is None or self.error_shown:
            return b""
        reason = self.fatal.split(". ")[0][:300]
        return f"error: {self.prefix}: JAX's distributed runtime ended it ({reason})\n".encode()


_helper: subprocess.Popen | None = None


def install(prefix: str) -> None:
    """Route this process's stderr (fd 2, which C++ logs use too) through a filter process."""
    global _helper
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    _helper = subprocess.Popen([sys.executable, "-m", __name__, prefix], stdin=read_end, stdout=2)
    os.dup2(write_end, 2)
    os.close(read_end)
    os.close(write_end)


def _write_all(data: bytes) -> None:
    while data:
        data = data[os.write(1, data):]


def main() -> None:
    """Copy stdin to stdout through the filter until stdin closes (the process ended)."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # live as long as the process it serves
        signal.signal(sig, signal.SIG_IGN)
    log_filter = RuntimeLogFilter(sys.argv[1] if len(sys.argv) > 1 else "this process")
    while True:
        data = os.read(0, 65536)
        out = log_filter.feed(data, end=not data) + (b"" if data else log_filter.final())
        _write_all(out)
        if not data:
            return


if __name__ == "__main__":
    main()
