"""The stderr filter of multi-process runs: JAX runtime logs out, one error line kept or made."""

from __future__ import annotations

from sar_jax.training.runtime_log_filter import RuntimeLogFilter

FATAL = (b"F1201 23:50:55.252087   29736 client.h:80] Terminating process because the JAX distributed service "
         b"detected fatal errors. absl::Status: UNAVAILABLE: Failed to send RPC to coordination service. Either "
         b"the leader task was preempted\n")


def test_ordinary_output_and_progress_pass_unchanged_even_split_across_reads():
    f = RuntimeLogFilter("process 1 of 2")
    out = f.feed(b"starting\nwarning: x\nepoch 1 10%\repo")
    out += f.feed(b"ch 1 20%\r") + f.feed(b"tail", end=True)
    assert out == b"starting\nwarning: x\nepoch 1 10%\repoch 1 20%\rtail"
    assert f.final() == b""


def test_a_fatal_runtime_error_becomes_one_error_line():
    f = RuntimeLogFilter("process 1 of 2")
    out = f.feed(b"E1201 23:50:55.252082   29736 coordination_service_agent.cc:289] Polled an error\n"
                 b"Additional GRPC error information from remote target\n" + FATAL +
                 b"*** Check failure stack trace: ***\n    @     0x7f4965440634  absl::LogMessage\n", end=True)
    assert out == b""
    assert f.final() == (b"error: process 1 of 2: JAX's distributed runtime ended it (UNAVAILABLE: Failed to "
                         b"send RPC to coordination service)\n")


def test_an_error_line_of_the_program_wins_over_the_runtime_log():
    f = RuntimeLogFilter("process 2 of 3")
    out = f.feed(b"W1201 23:50:55.249727   29736 preemption_sync_manager.cc:147] Failed to retrieve\n"
                 b":UNKNOWN:Error received from peer\n"
                 b"error: process 0 (the coordinator) stopped or became unreachable\n" + FATAL, end=True)
    assert out == b"error: process 0 (the coordinator) stopped or became unreachable\n"
    assert f.final() == b""
