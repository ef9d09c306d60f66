"""The delivery worker: a background thread that sends due outbox rows.

Why it looks like this: ingestion must never wait for a receiver, so the worker uses its
own short transactions (claim, then record the outcome) and never touches run rows or
holds a transaction open across HTTP. Sends run on a small thread pool with at most one
in flight per webhook per process, so a slow receiver only delays its own queue. Claims
are atomic across processes (see ``monitor.store.webhooks``), so several servers on one
database never send one row concurrently; a claim's lease makes a row due again if its
process dies mid-send: at-least-once, with a stable ``webhook-id`` for deduplication.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy.exc import OperationalError

from monitor import __version__, metrics
from monitor.alerts import urls
from monitor.alerts.formats import render_body
from monitor.alerts.signing import signed_headers
from monitor.settings import Settings
from monitor.store import webhooks as store
from monitor.store.database import Database
from monitor.store.models import utcnow

log = logging.getLogger(__name__)
MAX_ERROR_BODY = 300


@dataclass(frozen=True)
class SendOutcome:
    """Result of one HTTP attempt; ``error`` is safe to store and show (no secrets)."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


def backoff_delay(attempts: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before the next try: ``base * 2**(attempts-1)`` capped, with jitter in [50%, 100%].

    Jitter spreads retries of many rows that failed together; a receiver's Retry-After
    (within the cap) is honoured as a lower bound.
    """
    delay = min(cap, base * 2 ** max(attempts - 1, 0)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None  # an HTTP date: rare from webhook receivers, use our own backoff


class DeliveryWorker:
    """Started and stopped by the app's lifespan; one per process."""

    def __init__(self, db: Database, settings: Settings, client: httpx.Client | None = None) -> None:
        self.db = db
        self.settings = settings
        # httpx logs every request URL at INFO; receiver URLs can hold secrets (Slack's do).
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(max(logging.getLogger(name).getEffectiveLevel(), logging.WARNING))
        self.concurrency = max(1, settings.webhook_concurrency)
        # A lease shorter than a send could hand a row to another process mid-send.
        self.lease_seconds = max(settings.webhook_lease_seconds, 2 * settings.webhook_timeout_seconds + 1)
        self._client = client or httpx.Client(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False,
            headers={"user-agent": f"training-health-monitor/{__version__}"},
            limits=httpx.Limits(max_connections=self.concurrency * 2),
        )
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Condition()  # guards _busy and _inflight; notified when a send ends
        self._busy: set[int] = set()
        self._inflight = 0
        self._queue: queue.SimpleQueue[store.ClaimedDelivery | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the poller and the senders (daemon threads, so a hung send never blocks exit)."""
        if self._threads:
            return
        self._threads = [threading.Thread(target=self._run, name="webhook-poller", daemon=True)]
        self._threads += [threading.Thread(target=self._send_loop, name=f"webhook-send-{n}", daemon=True)
                          for n in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        log.info("webhook delivery worker started (concurrency %d, lease %.0fs)",
                 self.concurrency, self.lease_seconds)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming, let in-flight sends finish (up to ``timeout``), release the rest."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        if self._threads:
            self._threads[0].join(max(deadline - time.monotonic(), 0))
        for _ in self._threads[1:]:
            self._queue.put(None)
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0, max(deadline - time.monotonic(), 0))
            late = self._inflight
        if late:
            log.warning("%d webhook send(s) still in flight at shutdown; their leases "
                        "will expire and they will be retried", late)
        else:
            self._client.close()
        log.info("webhook delivery worker stopped")

    def wake(self) -> None:
        """Poll now instead of at the next interval."""
        self._wake.set()

    # --- polling ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                claimed = self.poll_once()
            except Exception as exc:  # the database may be briefly away: keep going
                log.warning("webhook poll failed: %s: %s", type(exc).__name__, exc)
                claimed = 0
            if claimed and self._free_slots() > 0:
                continue  # more may be due right away
            self._wake.wait(self.settings.webhook_poll_seconds)

    def _free_slots(self) -> int:
        with self._idle:
            return self.concurrency - self._inflight

    def poll_once(self) -> int:
        """Claim what is due (one row per idle webhook) and hand it to the senders."""
        free = self._free_slots()
        if free <= 0 or self._stopping.is_set():
            return 0
        with self._idle:
            busy = sorted(self._busy)
        now = utcnow()
        with self.db.read_session() as session:
            if not store.has_due(session, now, busy):
                return 0
        lease_until = now + timedelta(seconds=self.lease_seconds)
        with self.db.write_session() as session:
            claims = store.claim_due(session, now=now, lease_until=lease_until, limit=free,
                                     busy_webhooks=busy, max_attempts=self.settings.webhook_max_attempts)
        for claim in claims:
            self._submit(claim)
        return len(claims)

    def _submit(self, claim: store.ClaimedDelivery) -> None:
        with self._idle:
            self._busy.add(claim.webhook_id)
            self._inflight += 1
        self._queue.put(claim)

    def _send_loop(self) -> None:
        """One sender thread: deliver claims until told to stop (``None``)."""
        while (claim := self._queue.get()) is not None:
            try:
                self._deliver(claim)
            finally:
                with self._idle:
                    self._inflight -= 1
                    self._busy.discard(claim.webhook_id)
                    self._idle.notify_all()
                self._wake.set()

    # --- one delivery ----------------------------------------------------------------

    def _deliver(self, claim: store.ClaimedDelivery) -> None:
        """Send one claimed row and record the outcome (never raises)."""
        try:
            if self._stopping.is_set():
                with self.db.write_session() as session:
                    store.release(session, claim, utcnow())
                return
            try:
                outcome = self.send(claim)
            except Exception as exc:  # a bug, not the receiver: count it so the row cannot loop forever
                log.exception("webhook %d delivery %d: unexpected error while sending", claim.webhook_id, claim.id)
                outcome = SendOutcome(ok=False, error=f"internal error: {type(exc).__name__}")
            self._record_soon(claim, outcome)
        except Exception:
            log.exception("webhook %d delivery %d (%s): could not record the outcome; "
                          "it will be retried after its lease", claim.webhook_id, claim.id, claim.event_id)

    def _record_soon(self, claim: store.ClaimedDelivery, outcome: SendOutcome, tries: int = 3) -> None:
        """Record, retrying a briefly unavailable database: a lost "delivered" means a resend."""
        for attempt in range(1, tries + 1):
            try:
                self._record(claim, outcome)
                return
            except OperationalError:
                if attempt == tries:
                    raise
                time.sleep(0.5 * attempt)

    def send(self, claim: store.ClaimedDelivery) -> SendOutcome:
        """One signed POST; every failure becomes an outcome, never an exception."""
        try:
            urls.check_destination(claim.url, self.settings.webhook_allow_private)
        except urls.UnsafeUrl as exc:
            return SendOutcome(ok=False, error=f"refused: {exc}")
        body = render_body(claim.payload, claim.format)
        headers = signed_headers(claim.secret, claim.event_id, int(time.time()), body)
        try:
            with self._client.stream("POST", claim.url, content=body.encode(), headers=headers) as response:
                if response.is_success:
                    return SendOutcome(ok=True, status_code=response.status_code)
                snippet = _read_snippet(response)
                return SendOutcome(ok=False, status_code=response.status_code,
                                   error=f"HTTP {response.status_code}: {snippet}".strip(),
                                   retry_after=_retry_after(response))
        except httpx.HTTPError as exc:
            message = str(exc).replace(claim.url, urls.redact(claim.url)) or "no detail"
            return SendOutcome(ok=False, error=f"{type(exc).__name__}: {message}")

    def _record(self, claim: store.ClaimedDelivery, outcome: SendOutcome) -> None:
        """Store the outcome: delivered, retry later, or failed for good."""
        now = utcnow()
        where = f"webhook {claim.webhook_id} delivery {claim.id} ({claim.event_type}, {claim.event_id}) " \
                f"to {urls.redact(claim.url)} attempt {claim.attempts}"
        with self.db.write_session() as session:
            if outcome.ok:
                owned, label = store.mark_delivered(session, claim, now), "delivered"
                log.info("%s: delivered (HTTP %s)", where, outcome.status_code)
            elif claim.attempts >= self.settings.webhook_max_attempts:
                owned, label = store.mark_attempt_failed(session, claim, outcome.error or "failed", None), "failed"
                log.warning("%s: failed for good after %d attempts: %s", where, claim.attempts, outcome.error)
            else:
                delay = backoff_delay(claim.attempts, self.settings.webhook_backoff_base_seconds,
                                      self.settings.webhook_backoff_max_seconds, outcome.retry_after)
                owned = store.mark_attempt_failed(session, claim, outcome.error or "failed",
                                                  now + timedelta(seconds=delay))
                label = "retry"
                log.info("%s: %s; retrying in %.1fs", where, outcome.error, delay)
        metrics.observe_delivery(label)
        if not owned:
            log.warning("%s: lease lost before the outcome was recorded (another process owns it)", where)


def _read_snippet(response: httpx.Response) -> str:
    """The start of an error body, for last_error; never reads a huge body whole."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= MAX_ERROR_BODY:
            break
    return data[:MAX_ERROR_BODY].decode("utf-8", errors="replace").strip()
