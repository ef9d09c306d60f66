"""One HTTP attempt of a webhook delivery, under a total wall-clock deadline.

Why async: httpx's timeouts are per connect/read, so a receiver that answers one byte
every few seconds could hold a synchronous send for minutes -- past the claim's lease,
after which another process sends the same event again. Here each attempt runs on one
event loop (an anyio blocking portal shared by the sender threads) inside
``anyio.move_on_after``, which bounds the whole attempt however the bytes trickle.

An attempt ends when the status line and headers are in: a 2xx is recorded as delivered
even if the body then trickles, and the body is never read (nor stored): ``error`` is a
short reason of our own ("HTTP 500", "timeout after 5.0 s", "connection refused").
"""

from __future__ import annotations

import errno
import math
import socket
import ssl
from contextlib import ExitStack
from dataclasses import dataclass

import anyio
import httpx
from anyio.from_thread import start_blocking_portal

from monitor.alerts import urls


@dataclass(frozen=True)
class SendOutcome:
    """Result of one HTTP attempt; ``error`` is our own short reason, safe to store and show."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None  # an HTTP date: rare from webhook receivers, use our own backoff
    return max(seconds, 0.0) if seconds is not None and math.isfinite(seconds) else None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it was raised from (causes, contexts, exception groups)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        item = todo.pop()
        if any(item is known for known in seen):
            continue
        seen.append(item)
        todo += [link for link in (item.__cause__, item.__context__) if link is not None]
        todo += list(getattr(item, "exceptions", ()))
    return seen


def reason_for(exc: httpx.HTTPError, timeout: float) -> str:
    """A short, fixed-vocabulary reason for a transport failure (never the receiver's words)."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout after {timeout:.1f} s"
    causes = _causes(exc)
    if any(isinstance(c, ConnectionRefusedError) or getattr(c, "errno", None) == errno.ECONNREFUSED
           for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "host does not resolve"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return "TLS handshake failed"
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "receiver closed the connection without a valid answer"
    return f"request failed ({type(exc).__name__})"


class AttemptSender:
    """Owns the event loop thread and the async client; ``send`` is called from any thread."""

    def __init__(self, *, timeout: float, allow_private: bool, max_connections: int, user_agent: str) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal())
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers={"user-agent": user_agent},
            limits=httpx.Limits(max_connections=max_connections),
        )

    def send(self, url: str, body: bytes, headers: dict[str, str], deadline: float,
             nominal: float | None = None) -> SendOutcome:
        """One POST, over within ``deadline`` seconds; blocks the calling thread meanwhile.

        ``nominal`` is the configured deadline the timeout reason names (``deadline`` is
        what is left of it once the claim waited), so stored reasons stay comparable.
        """
        return self._portal.call(self._attempt, url, body, headers, deadline, nominal or deadline)

    async def _attempt(self, url: str, body: bytes, headers: dict[str, str], deadline: float,
                       nominal: float) -> SendOutcome:
        outcome: SendOutcome | None = None
        response: httpx.Response | None = None
        with anyio.move_on_after(deadline):
            try:  # the DNS answer is checked inside the deadline too (getaddrinfo can hang)
                await anyio.to_thread.run_sync(urls.check_destination, url, self.allow_private,
                                               abandon_on_cancel=True)
            except urls.UnsafeUrl as exc:
                return SendOutcome(ok=False, error=f"refused: {exc}")
            try:
                request = self._client.build_request("POST", url, content=body, headers=headers)
                response = await self._client.send(request, stream=True)
                outcome = _outcome_of(response)  # no await since the headers: the deadline cannot undo it
            except httpx.HTTPError as exc:
                outcome = SendOutcome(ok=False, error=reason_for(exc, self.timeout))
        if response is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await response.aclose()  # drops the connection: an unread body is never drained
        return outcome or SendOutcome(ok=False, error=f"timeout after {nominal:.1f} s (attempt deadline)")

    def close(self) -> None:
        """Cancel attempts still running (shutdown) and stop the loop thread."""
        self._portal.call(self._portal.stop, True)
        self._stack.close()

    def close_client(self) -> None:
        """Close pooled connections; then ``close``."""
        self._portal.call(self._client.aclose)
        self.close()


def _outcome_of(response: httpx.Response) -> SendOutcome:
    if response.is_success:
        return SendOutcome(ok=True, status_code=response.status_code)
    return SendOutcome(ok=False, status_code=response.status_code, error=f"HTTP {response.status_code}",
                       retry_after=_retry_after(response))
