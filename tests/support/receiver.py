"""A real HTTP webhook receiver on loopback that records what it gets.

It can be told to answer errors for the next N requests, to hold requests open until the
test lets them go (``hold()`` / ``let_go()``: the test, not a clock, decides when a send
ends), or to be down (its socket closed, so senders get "connection refused") and come back
on the same port.

It can also trickle (``trickle = "headers"`` or ``"body"``): send the status line, then
one byte every ``trickle_interval`` seconds -- of a never-ending header, or of the body
after complete headers -- until the test sets ``release`` or the sender hangs up. It notes
each request that arrives while an earlier request with the same ``webhook-id`` is still
open (``overlaps``): a sender that hung up has closed its socket, and on loopback that FIN
is queued before the sender can connect again, so this check does not depend on timing.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.service import free_port


@dataclass
class Received:
    """One request as it arrived, and the status it was answered with."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    arrived: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # a trickled answer the sender hung up on before it was complete

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Start with ``start()``; ``url`` is where to subscribe."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[Received] = []
        self.fail_remaining = 0
        self.fail_status = 500
        self.fail_body = b'{"error":"told to fail"}'
        self.holding = False  # True: new requests get no answer until let_go()
        self._let_go = threading.Event()
        self.trickle: str | None = None  # None, "headers" or "body"
        self.trickle_interval = 0.2
        self.release = threading.Event()  # set: trickles finish, new requests are answered at once
        self.overlaps = 0
        self._open: dict[str, list[socket.socket]] = {}
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        """Listen (again) on the same port."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Go down: close the listening socket (connections are refused until ``start``);
        held requests are let go so no handler thread outlives the test."""
        self.let_go()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer ``status`` to the next ``count`` requests."""
        with self._cond:
            self.fail_remaining, self.fail_status = count, status

    def hold(self) -> None:
        """Answer nothing to requests arriving from now on until ``let_go()``."""
        self._let_go.clear()
        self.holding = True

    def let_go(self) -> None:
        """Answer every held request now, and later ones at once."""
        self.holding = False
        self._let_go.set()

    def _decide(self) -> int:
        with self._cond:
            if self.fail_remaining > 0:
                self.fail_remaining -= 1
                return self.fail_status
            return 200

    def _record(self, item: Received) -> None:
        with self._cond:
            self.requests.append(item)
            self._cond.notify_all()

    def _arrive(self, item: Received, sock: socket.socket) -> None:
        """Record ``item``, counting an overlap if a request with its id is still open."""
        with self._cond:
            if any(_still_open(other) for other in self._open.get(item.webhook_id, [])):
                self.overlaps += 1
            self._open.setdefault(item.webhook_id, []).append(sock)
            self.requests.append(item)
            self._cond.notify_all()

    def _leave(self, item: Received, sock: socket.socket, abandoned: bool) -> None:
        with self._cond:
            self._open[item.webhook_id].remove(sock)
            item.abandoned = abandoned
            self._cond.notify_all()

    def held_connected(self) -> int:
        """Requests still open whose sender is still connected (it has not given up)."""
        with self._cond:
            return sum(_still_open(sock) for socks in self._open.values() for sock in socks)

    def abandoned(self) -> list[Received]:
        """Trickled answers the sender hung up on."""
        return [item for item in self.snapshot() if item.abandoned]

    def open_count(self) -> int:
        """Requests whose answer is still being trickled or held."""
        with self._cond:
            return sum(len(socks) for socks in self._open.values())

    # --- reading what arrived -----------------------------------------------------------

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.requests)

    def delivered(self) -> list[Received]:
        """Requests answered 2xx."""
        return [item for item in self.snapshot() if item.ok]

    def delivered_ids(self) -> Counter[str]:
        """How many 2xx answers each webhook-id got."""
        return Counter(item.webhook_id for item in self.delivered())

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20) -> list[Received]:
        """Block until ``predicate(requests)`` holds; AssertionError with what arrived if not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver: condition not met in {timeout}s; got "
                                         f"{[(r.status, r.webhook_id) for r in self.requests]}")
                self._cond.wait(min(left, 0.2))
            return list(self.requests)

    def wait_delivered(self, count: int, timeout: float = 20) -> list[Received]:
        """Block until at least ``count`` requests were answered 2xx."""
        self.wait_for(lambda items: sum(item.ok for item in items) >= count, timeout)
        return self.delivered()


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: "down" really is down

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status = receiver._decide()
            item = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status)
            if receiver.trickle and not receiver.release.is_set():
                receiver._arrive(item, self.connection)
                receiver._leave(item, self.connection, abandoned=not self._trickle(status))
                return
            receiver._arrive(item, self.connection)
            if receiver.holding:
                receiver._let_go.wait()
            receiver._leave(item, self.connection, abandoned=False)
            payload = b'{"ok":true}' if status < 300 else receiver.fail_body
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the sender gave up (or died) while we held it

        def _trickle(self, status: int) -> bool:
            """Trickle an answer until released (True) or the sender hangs up (False)."""
            head = f"HTTP/1.1 {status} Trickling\r\ncontent-type: application/json\r\n"
            if receiver.trickle == "body":
                head += "content-length: 1000000\r\n\r\n"
            else:
                head += "x-trickle: "
            try:
                self.wfile.write(head.encode())
                while not receiver.release.is_set():
                    readable, _, _ = select.select([self.connection], [], [], receiver.trickle_interval)
                    if readable and not _still_open(self.connection):
                        return False
                    self.wfile.write(b"a")
                self.wfile.write(b"{}" if receiver.trickle == "body" else b"\r\ncontent-length: 2\r\n\r\n{}")
                return True
            except OSError:
                return False

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
            pass

    return Handler


def _still_open(sock: socket.socket) -> bool:
    """False once the peer has closed (EOF or reset is waiting); senders send nothing more."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return not readable or sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except (OSError, ValueError):
        return False


# --- driving the real service to alert ---------------------------------------------------

COLLAPSE_CONFIG = {"monitor": {"batch_for": 3}}


def drive_collapse(service: Any, run_id: str, batches: int = 30, start_step: int = 0) -> Any:
    """Create ``run_id`` and ingest collapsed attention (0.001) until the pause rule fires."""
    service.client.put(f"/api/v1/runs/{run_id}", json={"config": COLLAPSE_CONFIG}).raise_for_status()
    records = [{"step": step, "epoch": 0, "attention_max": 0.001, "accuracy": 0.5}
               for step in range(start_step, start_step + batches)]
    response = service.client.post(f"/api/v1/runs/{run_id}/diagnostics", json={"records": records})
    response.raise_for_status()
    return response


def subscribe(service: Any, url: str, **fields: Any) -> dict[str, Any]:
    """POST /api/v1/webhooks; returns the create answer (with the secret)."""
    response = service.client.post("/api/v1/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    return response.json()
