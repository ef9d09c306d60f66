"""The escalation gate's promise under a sick monitor: a poll never stalls training beyond its timeout.

httpx timeouts are per operation (connect, each read), not per request: a server or
proxy that trickles its answer a byte at a time, each byte inside the read timeout,
holds a request open for as long as it likes. The gate is called from the training
loop, so its bound has to hold for a whole poll.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from trainer_client import EscalationGate

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n"
          b'{"decision": "continue"}\n')


TRICKLE_BOUND_S = 20.0


@pytest.fixture
def trickling_port() -> Iterator[int]:
    """A server that answers one byte every 0.5 s (each read well inside a 1 s read timeout):
    ~50 s for the whole answer, so a gate that bounded each read, not the poll, would take
    that long -- far beyond any test's slack -- and one that bounds the poll takes ~1 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                for byte in ANSWER:
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
                    if stop.wait(0.5):
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()


def test_a_trickling_monitor_does_not_stall_the_gate(trickling_port: int) -> None:
    gate = EscalationGate(f"http://127.0.0.1:{trickling_port}", "token", "run", timeout=1.0)
    try:
        started = time.monotonic()
        gate.should_escalate(step=0, epoch=0)
        elapsed = time.monotonic() - started
    finally:
        gate.close()
    # A generous bound that still tells the two apart: ~1 s when the poll is bounded, ~50 s when not.
    assert elapsed < TRICKLE_BOUND_S, f"one poll took {elapsed:.1f}s with timeout=1.0"
