"""The process link's start checks and loss detection, with threads standing in for processes."""

from __future__ import annotations

import threading

import pytest

from sar_jax.core.errors import SarJaxError
from sar_jax.training import process_link
from tests.training.distributed._helpers import free_port


def start(counts: list[int], ids: list[int], timeout: float = 5.0) -> list[object]:
    """``connect`` for each (num_processes, process_id) in its own thread: a link or the error."""
    coordinator = f"127.0.0.1:{free_port()}"
    results: list[object] = [None] * len(ids)

    def one(k: int) -> None:
        try:
            results[k] = process_link.connect(coordinator, counts[k], ids[k], timeout)
        except SarJaxError as exc:
            results[k] = exc

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return results


def test_three_processes_meet_and_a_closed_link_is_reported():
    links = start([3, 3, 3], [0, 1, 2])
    assert all(isinstance(link, process_link.ProcessLink) for link in links)
    assert sorted(links[0].peers) == [1, 2] and list(links[1].peers) == [0]
    lost: list[str] = []
    done = threading.Event()
    links[0].watch(lambda message: (lost.append(message), done.set()))
    links[2].close(goodbye=True)  # a normal end: nothing reported
    links[1].close(goodbye=False)  # gone without a goodbye
    assert done.wait(5)
    assert lost == ["process 1 stopped or became unreachable; stopping process 0 of 3 too"]
    links[0].close(goodbye=True)


@pytest.mark.parametrize("counts,ids,expected", [
    ([2, 3], [0, 1], "process 1 was started with num_processes=3, process 0 with 2"),
    ([3, 3, 3], [0, 1, 1], "two processes were started with process_id 1"),
    ([3, 3], [0, 1], "process(es) 2 of 3 did not join within 1 s"),
])
def test_processes_that_disagree_or_are_missing_all_fail(counts, ids, expected):
    results = start(counts, ids, timeout=1.0)
    assert all(isinstance(r, SarJaxError) for r in results), results
    assert [str(r) for r in results] == [expected] * len(ids)


def test_nobody_at_the_coordinator():
    [result] = start([2], [1], timeout=0.5)
    assert isinstance(result, SarJaxError)
    assert "no process 0 answered within 0.5 s" in str(result)


def test_a_malformed_coordinator_address_is_refused():
    with pytest.raises(SarJaxError, match="expected HOST:PORT"):
        process_link.connect("localhost", 2, 1, 1.0)
