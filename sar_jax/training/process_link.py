"""A plain TCP link between the processes of a multi-process run, held beside ``jax.distributed``.

Hand-written because JAX 0.10.2 gives no clean way to fail: when its coordination client cannot
connect (coordinator unreachable, a process missing) or learns that a peer died (heartbeat
timeout), it ends the process with ``LOG(FATAL)`` and a C++ stack dump, and a Python
``missed_heartbeat_callback`` (not exposed by ``jax.distributed.initialize``) crashes with
``std::bad_cast`` in jaxlib. So, before JAX starts, process 0 accepts one connection from every
other process on the coordinator's port and checks that they agree (ids, ``num_processes``);
the connections then stay open, and a watcher thread ends this process with one ``error:`` line
as soon as a peer's connection closes without a goodbye (a dead process closes its sockets at
once; a vanished host is caught by TCP keepalive), so every process stops within seconds of the
first one stopping, long before JAX's own heartbeat timeout.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable

from sar_jax.core.errors import SarJaxError

GOODBYE = b"goodbye\n"
_exiting = threading.Lock()
KEEPALIVE_S = 5  # idle seconds before TCP keepalive probes; 3 probes 5 s apart -> a lost host in ~20 s


def _split_address(coordinator: str) -> tuple[str, int]:
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SarJaxError(f"coordinator {coordinator!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_S), ("TCP_KEEPINTVL", KEEPALIVE_S), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _receive(sock: socket.socket, deadline: float) -> dict | None:
    """One JSON line, or None if the peer closed or the deadline passed."""
    data = b""
    while not data.endswith(b"\n"):
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(4096)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        return None


class ProcessLink:
    """This process's open connections to the others (process 0: to every peer; a peer: to 0)."""

    def __init__(self, process_id: int, num_processes: int, peers: dict[int, socket.socket]) -> None:
        self.process_id, self.num_processes, self.peers = process_id, num_processes, peers
        self.lost = threading.Event()  # set when a peer stopped unannounced
        self._closing = False

    def watch(self, on_lost: Callable[[str], None]) -> None:
        """Start one daemon thread per peer; ``on_lost(message)`` runs when a peer stops unannounced."""
        for peer, sock in self.peers.items():
            threading.Thread(target=self._watch_one, args=(peer, sock, on_lost), daemon=True,
                             name=f"process-link-{peer}").start()

    def _watch_one(self, peer: int, sock: socket.socket, on_lost: Callable[[str], None]) -> None:
        sock.settimeout(None)
        data = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                break
            data += chunk
        if self._closing or data.endswith(GOODBYE):
            return
        who = "process 0 (the coordinator)" if peer == 0 else f"process {peer}"
        self.lost.set()
        on_lost(f"{who} stopped or became unreachable; stopping process {self.process_id} of "
                f"{self.num_processes} too")

    def close(self, *, goodbye: bool) -> None:
        """Close every connection; with ``goodbye`` the peers take it as a normal end."""
        self._closing = True
        for sock in self.peers.values():
            try:
                if goodbye:
                    sock.sendall(GOODBYE)
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


def _check(hello: dict, num_processes: int, seen: list[int]) -> str | None:
    peer, count = hello.get("process_id"), hello.get("num_processes")
    if count != num_processes:
        return f"process {peer} was started with num_processes={count}, process 0 with {num_processes}"
    if not isinstance(peer, int) or not 0 < peer < num_processes:
        return f"a process was started with process_id {peer}; expected 1..{num_processes - 1} besides process 0"
    if peer in seen:
        return f"two processes were started with process_id {peer}"
    return None


def _serve(port: int, num_processes: int, timeout: float) -> dict[int, socket.socket]:
    """Process 0: accept every other process, check they agree, answer each (ok or the error)."""
    deadline = time.monotonic() + timeout
    joined: list[tuple[int, socket.socket]] = []
    problem = None
    try:
        server = (socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
                  if socket.has_dualstack_ipv6() else socket.create_server(("", port)))
    except OSError as exc:
        raise SarJaxError(f"coordinator port {port}: cannot listen ({exc.strerror or exc})") from None
    with server:
        while len(joined) < num_processes - 1 and problem is None:
            server.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                sock, _ = server.accept()
            except TimeoutError:
                break
            hello = _receive(sock, deadline)
            if hello is None:
                sock.close()
                continue
            problem = _check(hello, num_processes, [p for p, _ in joined])
            joined.append((hello.get("process_id"), sock))
    if problem is None and len(joined) < num_processes - 1:
        missing = sorted(set(range(1, num_processes)) - {p for p, _ in joined})
        problem = (f"process(es) {', '.join(map(str, missing))} of {num_processes} did not join within "
                   f"{timeout:g} s")
    for _, sock in joined:
        try:
            _send(sock, {"error": problem} if problem else {"ok": True})
        except OSError:
            pass
    if problem:
        for _, sock in joined:
            sock.close()
        raise SarJaxError(problem)
    return dict(joined)


def _join(host: str, port: int, process_id: int, num_processes: int, timeout: float) -> socket.socket:
    """A peer: connect to process 0 (retrying until ``timeout``), say who we are, await its verdict."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.01))
            break
        except OSError:
            if time.monotonic() >= deadline:
                raise SarJaxError(f"coordinator {host}:{port}: no process 0 answered within {timeout:g} s "
                                  "(is it running, is the address right?)") from None
            time.sleep(0.2)
    _send(sock, {"process_id": process_id, "num_processes": num_processes})
    answer = _receive(sock, deadline + 5)  # process 0 answers at its own deadline at the latest
    if answer is None:
        sock.close()
        raise SarJaxError(f"coordinator {host}:{port}: process 0 did not confirm the start within {timeout:g} s")
    if "error" in answer:
        sock.close()
        raise SarJaxError(answer["error"])
    return sock


def connect(coordinator: str, num_processes: int, process_id: int, timeout: float) -> ProcessLink:
    """Meet every other process on the coordinator's address (before ``jax.distributed`` uses
    the port); raises :class:`SarJaxError` within about ``timeout`` seconds when they disagree or
    do not all arrive."""
    host, port = _split_address(coordinator)
    if process_id == 0:
        peers = _serve(port, num_processes, timeout)
    else:
        peers = {0: _join(host, port, process_id, num_processes, timeout)}
    for sock in peers.values():
        _keepalive(sock)
    return ProcessLink(process_id, num_processes, peers)


def exit_now(message: str, code: int = 2) -> None:
    """Print ``error: message`` and end the process at once (no atexit handlers: JAX's shutdown
    barrier would wait for the processes that are gone). Only the first caller prints; a second
    thread calling too waits here for the exit."""
    _exiting.acquire()
    sys.stdout.flush()
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    os._exit(code)
