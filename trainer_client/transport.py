"""HTTP transport of the monitor client: one payload in, the server's answer (or None) out.

Why a module of its own: :class:`~trainer_client.client.MonitorClient` decides *when*
to send and what to spill; this module only knows *how* to talk to the monitor.
It makes sure the run exists (an idempotent PUT, so records never hit 404), retries
transient failures with exponential backoff and jitter (honouring Retry-After), and
bisects a batch the server refuses as a whole (422/413) so that one bad record does
not cost its neighbours. ``None`` always means "not delivered, keep it": the caller
spills the payload and replays it later; the server deduplicates on (run, rank,
step), so a retried or half-delivered batch never doubles a record.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from trainer_client.payload import Payload, payload_records

logger = logging.getLogger(__name__)

_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})
_SPLITTABLE = frozenset({413, 422})


class Transport:
    """Delivers the payloads of one run; used by the sender thread only (not thread-safe).

    ``counts`` is the client's counter dict, updated in place (sent, accepted,
    duplicates, rejected, epochs_sent). ``offline`` tells whether the client already
    knows the service is unavailable, so a refused token or run is logged once per
    outage rather than on every probe.
    """

    def __init__(self, base_url: str, token: str, run_id: str, run_body: dict[str, Any], timeout: float,
                 counts: dict[str, int], offline: Callable[[], bool]) -> None:
        self.run_id = run_id
        self._run_body = run_body
        self._counts = counts
        self._offline = offline
        self._run_ready = False
        self._http = httpx.Client(base_url=base_url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/json"})

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def send(self, payload: Payload, budget: float) -> dict[str, Any] | None:
        """Deliver one payload, retrying transient errors for ``budget`` seconds.

        Returns the server's answer (or a summary when 4xx records were dropped), or None
        when the service is unreachable: the caller spills the payload.
        """
        if not self._run_ready and not self._ensure_run(budget):
            return None
        path = f"/api/v1/runs/{self.run_id}/" + ("epochs" if "epoch" in payload else "diagnostics")
        deadline, attempt, recreated = time.monotonic() + budget, 0, False
        while True:
            status, body, retry_after = self._request("POST", path, payload)
            if status is not None and 200 <= status < 300:
                self._count_sent(payload, body)
                return body if isinstance(body, dict) else {}
            if status == 404 and not recreated:
                recreated, self._run_ready = True, False
                if self._ensure_run(budget):
                    continue
                return None
            if status in (401, 403):  # misconfigured token: keep the data for a fixed restart
                if not self._offline():
                    logger.error("monitor client %s: the monitor refused our token (HTTP %s): %s; keeping "
                                 "records in the spill", self.run_id, status, _detail(body))
                return None
            if status is None or status in _TRANSIENT:
                delay = _backoff(attempt, retry_after)
                if time.monotonic() + delay > deadline:
                    return None
                time.sleep(delay)
                attempt += 1
                continue
            return self._rejected(payload, status, body, budget)

    def _ensure_run(self, budget: float) -> bool:
        """PUT the run (idempotent) so records never hit 404; False if it could not be done."""
        deadline, attempt = time.monotonic() + budget, 0
        while True:
            status, body, retry_after = self._request("PUT", f"/api/v1/runs/{self.run_id}", self._run_body)
            if status in (200, 201):
                self._run_ready = True
                return True
            if status is not None and status not in _TRANSIENT:
                if not self._offline():
                    logger.error("monitor client %s: the monitor refused the run (HTTP %s): %s; keeping "
                                 "records in the spill", self.run_id, status, _detail(body))
                return False
            delay = _backoff(attempt, retry_after)
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            attempt += 1

    def _rejected(self, payload: Payload, status: int, body: Any, budget: float) -> dict[str, Any] | None:
        """4xx: bisect a multi-record batch to isolate bad records, drop what is invalid."""
        records = payload.get("records") or []
        if status in _SPLITTABLE and len(records) > 1:
            half = len(records) // 2
            for part in (records[:half], records[half:]):
                if self.send({"records": part}, budget) is None:
                    return None  # the caller spills the whole payload; the delivered half dedups later
            return {"split": True}
        what = f"{len(records)} record(s) from step {records[0].get('step')}" if records else "epoch summary"
        logger.error("monitor client %s: the monitor rejected %s (HTTP %s): %s; dropped",
                     self.run_id, what, status, _detail(body))
        self._counts["rejected"] += len(records)
        return {"rejected": len(records)}

    def _request(self, method: str, path: str, payload: Any) -> tuple[int | None, Any, float | None]:
        """(status or None on a network error, decoded body, Retry-After seconds)."""
        try:
            content = json.dumps(payload, allow_nan=False, default=str).encode()
            response = self._http.request(method, path, content=content)
        except httpx.HTTPError as exc:
            logger.debug("monitor client %s: %s %s failed: %r", self.run_id, method, path, exc)
            return None, repr(exc), None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return response.status_code, body, _retry_after(response)

    def _count_sent(self, payload: Payload, body: Any) -> None:
        """Update counters from a 2xx answer."""
        if "epoch" in payload:
            self._counts["epochs_sent"] += 1
            return
        answer = body if isinstance(body, dict) else {}
        self._counts["sent"] += payload_records(payload)
        self._counts["accepted"] += int(answer.get("accepted") or 0)
        self._counts["duplicates"] += int(answer.get("duplicates") or 0)


def _backoff(attempt: int, retry_after: float | None, base: float = 0.1, cap: float = 2.0) -> float:
    """Exponential backoff with equal jitter; the server's Retry-After wins (capped)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    delay = min(cap, base * 2**attempt)
    return delay / 2 + random.uniform(0, delay / 2)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, if the server sent a numeric one."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _detail(body: Any) -> str:
    """The server's ``detail`` field (FastAPI errors), shortened for a log line."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text[:1000]
