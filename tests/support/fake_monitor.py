"""A scripted stand-in for the monitor's ingestion API, for client tests the real service cannot stage.

The real service is what the client tests run against; this fake exists for answers
the real one never gives on cue: a ``Retry-After: nan`` from a broken proxy, a 503 for
exactly the requests that carry a given step, the raw request path as it arrived. It
stores records idempotently on (rank, step) like the real service, and answers
``accepted``/``duplicates`` the same way, so counter tests can be exact.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeRequest:
    """One request as it arrived (``path`` raw, still percent-encoded)."""

    method: str
    path: str
    body: Any

    @property
    def steps(self) -> list[int]:
        records = self.body.get("records") if isinstance(self.body, dict) else None
        return [record["step"] for record in records or []]


Answer = tuple[int, dict[str, str], Any]
Responder = Callable[[FakeRequest], Answer | None]


class FakeMonitor:
    """Listens on loopback; ``responder`` may answer a request itself (return None for the default)."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder = responder
        self.requests: list[FakeRequest] = []
        self.stored: set[tuple[int, int]] = set()  # (rank, step), idempotent like the real service
        self.delivered: Counter[int] = Counter()  # step -> times it came in a stored (2xx) request
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, request: FakeRequest) -> Answer:
        """The scripted answer, else what the real service would say."""
        with self._lock:
            self.requests.append(request)
        scripted = self.responder(request) if self.responder is not None else None
        if scripted is not None:
            return scripted
        if request.method == "PUT":
            return 200, {}, {"run_id": request.path.rsplit("/", 1)[-1], "created": True}
        if request.path.endswith("/epochs"):
            return 200, {}, {"decision": "continue"}
        return self._store(request)

    def _store(self, request: FakeRequest) -> Answer:
        if not request.path.endswith("/diagnostics") or not isinstance(request.body, dict):
            return 404, {}, {"detail": "Not Found"}
        accepted = 0
        with self._lock:
            for record in request.body["records"]:
                key = (record.get("rank", 0), record["step"])
                accepted += key not in self.stored
                self.stored.add(key)
                self.delivered[record["step"]] += 1
        count = len(request.body["records"])
        return 200, {}, {"accepted": accepted, "duplicates": count - accepted}

    def stored_steps(self) -> list[int]:
        with self._lock:
            return sorted(step for _, step in self.stored)


def _handler_for(fake: FakeMonitor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.loads(raw) if raw else None
            status, headers, answer = fake.answer(FakeRequest(self.command, self.path, body))
            data = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_PUT = do_POST = do_GET = _serve  # noqa: N815 (http.server's naming)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
            pass

    return Handler
