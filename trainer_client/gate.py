"""The trainer's side of the escalation question: may meta-escalation go on?

Why a gate object instead of a bare GET: the trainer asks at epoch end (or every N
steps) and must never stall on the monitor, so answers are cached between polls,
every request has a short timeout, and an unreachable monitor maps to an explicit,
configurable policy -- by default *pause*, because escalating blind is how the
documented collapse went unnoticed. The timeout bounds a whole poll, not each socket
operation: a monitor or proxy that trickles its answer cannot hold the training loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx

logger = logging.getLogger(__name__)

Source = Literal["service", "unreachable", "cached"]


@dataclass(frozen=True)
class GateDecision:
    """One answer; ``reasons`` are the server's reason dicts (or one made up here, with ``message``)."""

    decision: Literal["continue", "pause"]
    reasons: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    source: Source = "service"
    warnings: list[dict[str, Any]] = field(default_factory=list)
    epoch: int | None = None
    step: int | None = None

    @property
    def escalate(self) -> bool:
        """True when meta-escalation may go on."""
        return self.decision == "continue"

    def summary(self) -> str:
        """One line for logs: decision, source and the reasons' rule/rank/message."""
        parts = []
        for reason in self.reasons:
            if "message" in reason:
                parts.append(str(reason["message"]))
            else:
                parts.append(f"{reason.get('rule')}(rank {reason.get('rank')}: {reason.get('metric')}="
                             f"{reason.get('value')} vs {reason.get('threshold')})")
        why = "; ".join(parts) or (self.note or "")
        return f"{self.decision} [{self.source}]" + (f": {why}" if why else "")


class _DeadlineGetter:
    """GET requests with a deadline for the whole request, run on a private event loop.

    httpx timeouts apply per operation (connect, each read): a server that sends one
    byte at a time, each inside the read timeout, holds a blocking request open as long
    as it likes. On an event loop the request is a task, cancelled -- connection and
    all -- when the deadline passes. The loop lives in its own daemon thread, so this
    works from any caller, including one already running an event loop (notebooks).
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        self.timeout = timeout
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="escalation-gate-http", daemon=True)
        self._thread.start()

    def get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        """The full response, or TimeoutError after ``timeout`` seconds (httpx errors pass through)."""
        if self._loop.is_closed() or not self._thread.is_alive():
            raise RuntimeError("the escalation gate is closed")
        future = asyncio.run_coroutine_threadsafe(self._get(path, params), self._loop)
        try:
            return future.result(self.timeout + 1.0)  # the loop cancels at the deadline; this is a backstop
        except concurrent.futures.TimeoutError:  # the builtin TimeoutError from Python 3.11 on
            future.cancel()
            raise TimeoutError(f"no complete answer within {self.timeout:g}s") from None

    async def _get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        try:
            return await asyncio.wait_for(self._http.get(path, params=params), self.timeout)
        except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 on
            raise TimeoutError(f"no complete answer within {self.timeout:g}s") from None

    def close(self) -> None:
        """Close the connection pool and stop the loop (idempotent)."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._http.aclose(), self._loop).result(self.timeout + 1.0)
            except Exception:  # noqa: BLE001 - closing must not raise
                logger.debug("escalation gate: closing the HTTP client failed", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout + 1.0)
        if not self._thread.is_alive():
            self._loop.close()


class EscalationGate:
    """Polls ``GET /escalation/decision`` for one run and applies the unreachable policy."""

    def __init__(self, base_url: str, token: str, run_id: str, *, every_n_steps: int | None = None,
                 on_unreachable: Literal["pause", "continue"] = "pause", timeout: float = 2.0) -> None:
        if on_unreachable not in ("pause", "continue"):
            raise ValueError(f"on_unreachable must be 'pause' or 'continue', got {on_unreachable!r}")
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.run_id = run_id
        self.every_n_steps = every_n_steps
        self.on_unreachable = on_unreachable
        self._http = _DeadlineGetter(base_url.rstrip("/"), {"Authorization": f"Bearer {token}"}, timeout)
        self._last: GateDecision | None = None
        self._fresh = False  # the last answer has not been served from the cache yet
        self._polled_epoch: int | None = None
        self._polled_step: int | None = None

    def should_escalate(self, step: int | None = None, epoch: int | None = None) -> bool:
        """True if meta-escalation may go on; polls when due, else answers from the cache.

        A poll is due on the first call, for an epoch not asked about yet (epoch end),
        every ``every_n_steps`` steps, and on a call with neither ``step`` nor ``epoch``.
        """
        if self._due(step, epoch):
            return self.poll(step, epoch).escalate
        self._fresh = False
        return self.decision().escalate

    def _due(self, step: int | None, epoch: int | None) -> bool:
        """Whether the cached answer is stale for this call."""
        if self._last is None or (step is None and epoch is None):
            return True
        if epoch is not None and epoch != self._polled_epoch:
            return True
        if step is not None and self.every_n_steps is not None:
            return self._polled_step is None or step >= self._polled_step + self.every_n_steps
        return False

    def decision(self, refresh: bool = False) -> GateDecision:
        """The answer the last ``should_escalate`` used; polls if there is none yet or when asked.

        ``source`` is ``"cached"`` when that answer came from the cache rather than a poll.
        """
        if refresh or self._last is None:
            return self.poll()
        last = self._last
        return last if self._fresh or last.source == "unreachable" else replace(last, source="cached")

    def poll(self, step: int | None = None, epoch: int | None = None) -> GateDecision:
        """Ask the service now (the whole request bounded by the timeout); never raises."""
        self._polled_step = step if step is not None else self._polled_step
        self._polled_epoch = epoch if epoch is not None else self._polled_epoch
        try:
            # epoch: "may I escalate in this epoch?" (the service gates epochs before the start)
            params = {"run_id": self.run_id} if epoch is None else {"run_id": self.run_id, "epoch": epoch}
            response = self._http.get("/escalation/decision", params=params)
        except Exception as exc:  # noqa: BLE001 - any failure to ask is "unreachable", never a crash
            result = self._unreachable(f"monitor unreachable: {type(exc).__name__}: {exc}")
        else:
            result = self._from_response(response)
        if self._last is None or result.decision != self._last.decision:
            logger.info("escalation gate %s: %s", self.run_id, result.summary())
        self._last, self._fresh = result, True
        return result

    def _from_response(self, response: httpx.Response) -> GateDecision:
        """Map an HTTP answer to a decision: 200 as is, 404 pauses, anything else is the policy."""
        if response.status_code == 404:
            message = (f"run {self.run_id!r} is not known to the monitor (404); "
                       "pausing escalation until the run reports")
            return GateDecision("pause", [{"rule": "run_not_found", "message": message}], note=message)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict) or body.get("decision") not in (
                "continue", "pause"):
            detail = body.get("detail") if isinstance(body, dict) else response.text[:200]
            return self._unreachable(f"monitor unreachable: HTTP {response.status_code}: {detail}")
        return GateDecision(
            decision=body["decision"], reasons=list(body.get("reasons") or []),
            actions=list(body.get("actions") or []), note=body.get("note"), source="service",
            warnings=list(body.get("warnings") or []), epoch=body.get("epoch"), step=body.get("step"),
        )

    def _unreachable(self, message: str) -> GateDecision:
        """Apply the configured policy when no usable answer came back."""
        logger.warning("escalation gate %s: %s (policy: %s)", self.run_id, message, self.on_unreachable)
        if self.on_unreachable == "continue":
            return GateDecision("continue", note=f"{message} (policy: continue)", source="unreachable")
        reason = {"rule": "monitor_unreachable", "message": message}
        return GateDecision("pause", [reason], note=message, source="unreachable")

    def close(self) -> None:
        """Release the HTTP connection pool and the gate's event-loop thread."""
        self._http.close()

    def __enter__(self) -> EscalationGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
