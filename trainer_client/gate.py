"""The trainer's side of the escalation question: may meta-escalation go on?

Why a gate object instead of a bare GET: the trainer asks at epoch end (or every N
steps) and must never stall on the monitor, so answers are cached between polls,
every request has a short timeout, and an unreachable monitor maps to an explicit,
configurable policy -- by default *pause*, because escalating blind is how the
documented collapse went unnoticed.
"""

from __future__ import annotations

import logging
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
        # Connect and read each get half the budget, so one poll stays within ~timeout.
        half = timeout / 2
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx.Timeout(half, connect=half, read=half, write=half, pool=half))
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
        """Ask the service now (bounded by the timeout); never raises."""
        self._polled_step = step if step is not None else self._polled_step
        self._polled_epoch = epoch if epoch is not None else self._polled_epoch
        try:
            response = self._http.get("/escalation/decision", params={"run_id": self.run_id})
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
        """Release the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> EscalationGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
