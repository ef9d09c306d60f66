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
import math
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from trainer_client.compat import RefusedFields
from trainer_client.payload import Payload, payload_records

logger = logging.getLogger(__name__)

_TRANSIENT = frozenset({408, 425, 429, 500, 502, 503, 504})
_SPLITTABLE = frozenset({413, 422})
MAX_RETRY_AFTER_S = 60.0  # a Retry-After beyond this (or unparsable) is not trusted as is


def undelivered(payload: Payload, result: dict[str, Any] | None) -> Payload | None:
    """What of ``payload`` must still be kept after :meth:`Transport.send` answered ``result``.

    None when everything was handled (delivered, or rejected and counted); the payload
    itself when nothing was delivered; the records left over after a partly delivered
    bisection otherwise.
    """
    if result is None:
        return payload
    return result.get("undelivered")


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
        self.base_url = base_url
        self.run_body = run_body
        self._counts = counts
        self._offline = offline
        self._run_ready = False
        self.refused = RefusedFields(run_id, base_url)
        self._run_path = f"/api/v1/runs/{quote(run_id, safe='')}"  # an id is one path segment, never more
        self._http = httpx.Client(base_url=base_url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/json"})

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def send(self, payload: Payload, budget: float) -> dict[str, Any] | None:
        """Deliver one payload, retrying transient errors for ``budget`` seconds.

        Returns the server's answer (or a summary when 4xx records were dropped), or None
        when the service is unreachable: the caller spills the payload. After a bisection
        that was cut short, the summary's ``undelivered`` payload holds the records still
        to send (see :func:`undelivered`), so that nothing is sent or counted twice.
        """
        if not self._run_ready and not self._ensure_run(budget):
            return None
        payload = self.refused.apply(payload)
        path = f"{self._run_path}/" + ("epochs" if "epoch" in payload else "diagnostics")
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
            if status == 422 and self.refused.learn(body):  # an older service: resend without its unknown fields
                payload = self.refused.apply(payload)
                continue
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
            status, body, retry_after = self._request("PUT", self._run_path, self.run_body)
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
            return self._bisect(records, budget)
        what = f"{len(records)} record(s) from step {records[0].get('step')}" if records else "epoch summary"
        logger.error("monitor client %s: the monitor rejected %s (HTTP %s): %s; dropped",
                     self.run_id, what, status, _detail(body))
        self._counts["rejected"] += len(records)
        return {"rejected": len(records)}

    def _bisect(self, records: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
        """Send both halves; if one cannot be delivered, hand back only what is left of the batch."""
        half = len(records) // 2
        parts = [records[:half], records[half:]]
        for index, part in enumerate(parts):
            left = undelivered({"records": part}, self.send({"records": part}, budget))
            if left:
                rest = [*left["records"], *(record for later in parts[index + 1:] for record in later)]
                if len(rest) == len(records):
                    return None  # nothing of it was handled: the caller keeps the payload as it is
                return {"split": True, "undelivered": {"records": rest}}
        return {"split": True}

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
    if retry_after is not None and math.isfinite(retry_after):
        return min(max(retry_after, 0.0), cap)
    delay = min(cap, base * 2**attempt)
    return delay / 2 + random.uniform(0, delay / 2)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds within ``[0, MAX_RETRY_AFTER_S]``, or None if absent or unusable.

    Seconds or an HTTP date (RFC 9110); "nan", "inf", garbage and dates that do not parse
    are ignored (plain backoff applies), so a broken proxy cannot crash or stall the sender.
    """
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value)
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _seconds_until(http_date: str) -> float | None:
    """Seconds from now to an HTTP date, or None if it is not one."""
    try:
        when = parsedate_to_datetime(http_date)
        return when.timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _detail(body: Any) -> str:
    """The server's ``detail`` field (FastAPI errors), shortened for a log line."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text[:1000]
