"""The delivery worker: a background thread that sends due outbox rows.

Why it looks like this: ingestion must never wait for a receiver, so the worker uses its
own short transactions (claim, then record the outcome) and never touches run rows or
holds a transaction open across HTTP. Sends run on a small pool of sender threads with at
most one in flight per webhook (in any process) and at most
``webhook_concurrency_per_receiver`` per receiver origin in this process, so a slow
receiver -- even one behind many subscriptions -- only delays its own queue. Claims are
atomic across processes (see ``monitor.store.webhooks``); a claim's lease makes a row due
again if its process dies mid-send: at-least-once, with a stable ``webhook-id`` for
deduplication. Each attempt must end within ``webhook_attempt_deadline_seconds`` of its
claim (``monitor.alerts.sending``), which settings keep shorter than the lease: a row is
never claimed by a second process while the first is still sending it.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.exc import OperationalError

from monitor import __version__, metrics
from monitor.alerts import urls
from monitor.alerts.formats import render_body
from monitor.alerts.sending import AttemptSender, SendOutcome
from monitor.alerts.signing import signed_headers
from monitor.settings import Settings
from monitor.store import webhooks as store
from monitor.store.database import Database
from monitor.store.models import utcnow

log = logging.getLogger(__name__)
__all__ = ["DeliveryWorker", "SendOutcome", "backoff_delay"]


def backoff_delay(attempts: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before the next try: ``base * 2**(attempts-1)`` capped, with jitter in [50%, 100%].

    Jitter spreads retries of many rows that failed together; a receiver's Retry-After
    (within the cap) is honoured as a lower bound.
    """
    delay = min(cap, base * 2 ** max(attempts - 1, 0)) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


class DeliveryWorker:
    """Started and stopped by the app's lifespan; one per process."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # httpx logs every request URL at INFO; receiver URLs can hold secrets (Slack's do).
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(max(logging.getLogger(name).getEffectiveLevel(), logging.WARNING))
        self.concurrency = max(1, settings.webhook_concurrency)
        self.per_receiver = max(1, settings.webhook_concurrency_per_receiver)
        self.lease_seconds = settings.webhook_lease_seconds  # Settings keep the attempt deadline shorter
        self.attempt_deadline = settings.webhook_attempt_deadline_seconds
        self._sender = AttemptSender(timeout=settings.webhook_timeout_seconds,
                                     allow_private=settings.webhook_allow_private,
                                     max_connections=self.concurrency * 2,
                                     user_agent=f"training-health-monitor/{__version__}")
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Condition()  # guards _busy, _origins, _inflight; notified when a send ends
        self._busy: set[int] = set()
        self._origins: Counter[str] = Counter()  # sends in flight per receiver origin
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
        log.info("webhook delivery worker started (concurrency %d, %d per receiver, attempt deadline %.1fs, "
                 "lease %.1fs)", self.concurrency, self.per_receiver, self.attempt_deadline, self.lease_seconds)

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
            log.warning("%d webhook send(s) still in flight at shutdown: cancelled; their leases "
                        "will expire and they will be retried", late)
            self._sender.close()
        else:
            self._sender.close_client()
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
                                     busy_webhooks=busy, max_attempts=self.settings.webhook_max_attempts,
                                     admit=self._receiver_admission())
        for claim in claims:
            self._submit(claim)
        return len(claims)

    def _receiver_admission(self) -> Callable[[str], bool]:
        """A per-poll check: may one more send to this URL's receiver start now?"""
        with self._idle:
            taken = Counter(self._origins)

        def admit(url: str) -> bool:
            origin = urls.origin(url)
            if taken[origin] >= self.per_receiver:
                return False
            taken[origin] += 1
            return True

        return admit

    def _submit(self, claim: store.ClaimedDelivery) -> None:
        with self._idle:
            self._busy.add(claim.webhook_id)
            self._origins[urls.origin(claim.url)] += 1
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
                    self._origins[urls.origin(claim.url)] -= 1
                    self._idle.notify_all()
                self._wake.set()

    # --- one delivery ----------------------------------------------------------------

    def _deliver(self, claim: store.ClaimedDelivery) -> None:
        """Send one claimed row and record the outcome (never raises)."""
        try:
            deadline = self._time_left(claim)
            if self._stopping.is_set() or deadline <= 0:
                with self.db.write_session() as session:  # never sent: hand it back uncounted
                    store.release(session, claim, utcnow())
                return
            try:
                outcome = self.send(claim, deadline)
            except Exception as exc:
                if self._stopping.is_set():  # cancelled at shutdown: the lease runs out, then a retry
                    log.info("webhook %d delivery %d: send cancelled by shutdown", claim.webhook_id, claim.id)
                    return
                # a bug, not the receiver: count it so the row cannot loop forever
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

    def _time_left(self, claim: store.ClaimedDelivery) -> float:
        """Seconds this attempt may still take: the deadline counts from the claim, not the send,
        so the outcome is recorded while the lease still holds (the margin is lease - deadline)."""
        claimed_at = claim.lease_until - timedelta(seconds=self.lease_seconds)
        return self.attempt_deadline - (utcnow() - claimed_at).total_seconds()

    def send(self, claim: store.ClaimedDelivery, deadline: float | None = None) -> SendOutcome:
        """One signed POST within ``deadline`` seconds; every failure becomes an outcome."""
        body = render_body(claim.payload, claim.format)
        headers = signed_headers(claim.secret, claim.event_id, int(time.time()), body)
        deadline = self.attempt_deadline if deadline is None else deadline
        return self._sender.send(claim.url, body.encode(), headers, deadline, nominal=self.attempt_deadline)

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

