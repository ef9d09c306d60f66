"""Deliver-or-spill: what happens to one payload of the monitor client, in order.

Why a module of its own: :mod:`trainer_client.client` owns the queue and the sender
thread, :mod:`trainer_client.transport` the wire and :mod:`trainer_client.spill` the
disk; this module owns the offline decisions between them. A payload is sent now, or
-- while older payloads wait in the spill -- spilled behind them, so the monitor sees
records in the order they were logged. While the service is unreachable it is
re-probed on an exponential backoff, and the spill is replayed once it answers; a
flush or close tries at once, so a finished run's last records are not stranded on
disk while the monitor answers. Everything runs in the sender thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer_client.payload import Payload, payload_records
from trainer_client.spill import SpillStore
from trainer_client.transport import Transport, undelivered

logger = logging.getLogger(__name__)


class Delivery:
    """Sends through ``transport`` or spills; ``counts`` is the client's counter dict (updated in place).

    ``probe_bounds`` gives the first and the longest re-probe delay (read on each use, so
    a client may tune them after construction); setting ``abandon`` (a timed-out close)
    stops all network I/O: from then on everything goes to the spill.
    """

    def __init__(self, run_id: str, transport: Transport, counts: dict[str, int], retry_budget: float,
                 probe_bounds: Callable[[], tuple[float, float]], abandon: threading.Event) -> None:
        self.run_id = run_id
        self.spill: SpillStore | None = None
        self.offline_since: float | None = None
        self._transport = transport
        self._counts = counts
        self._retry_budget = retry_budget
        self._probe_bounds = probe_bounds
        self._abandon = abandon
        self._next_probe = 0.0
        self._probe_delay: float | None = None  # None: the first delay of probe_bounds
        self._spill_dir: Path | None = None

    def open_spill(self, directory: Path, max_bytes: int) -> None:
        """Open the spill (adopting a previous process's files); failures only disable spilling."""
        self._spill_dir = directory
        try:
            spill = SpillStore(directory, max_bytes, self.run_id, self._transport.run_body)
            spill.open()
            self.spill = spill
            self._transport.run_body = spill.run_body  # completed by the adopted files' headers
        except OSError as exc:
            logger.error("monitor client %s: cannot use spill dir %s (%s); undeliverable records "
                         "will be dropped", self.run_id, directory, exc)

    def refused_fields(self) -> set[str]:
        """Fields the monitor refused as unknown (an older service), left out since."""
        return set(self._transport.refused.fields)

    def pending(self) -> bool:
        """Whether spilled payloads wait for replay."""
        return self.spill is not None and self.spill.pending()

    def seconds_to_probe(self) -> float:
        """Time left before the next re-probe of an unreachable service (may be negative)."""
        return self._next_probe - time.monotonic()

    def deliver(self, payload: Payload) -> dict[str, Any] | None:
        """Send now, or spill behind older spilled payloads; the server answer or None."""
        if self.backlog():
            self._spill_payload(payload)
            return None
        result = self._transport.send(payload, self._retry_budget)
        left = undelivered(payload, result)
        if left is not None:  # all of it, or what a cut-short bisection left over
            self._go_offline()
            self._spill_payload(left)
        return result

    def backlog(self, force: bool = False) -> bool:
        """True while payloads must go to the spill to keep order (older ones wait there).

        Replays when a probe is due, or right away with ``force`` (flush/close).
        """
        if self._abandon.is_set():
            return True
        spill = self.spill
        if spill is None or not spill.pending():
            return False
        if not force and time.monotonic() < self._next_probe:
            return True
        replayed_before = self._counts["replayed"]
        if not spill.replay(self._replay_one):
            self._go_offline()
            return True
        logger.info("monitor client %s: monitor reachable again; replayed %d spilled record(s)",
                    self.run_id, self._counts["replayed"] - replayed_before)
        self.offline_since, self._probe_delay = None, None
        return False

    def _replay_one(self, payload: Payload) -> Payload | None:
        """Send one spilled payload without retries (the next probe is the retry); what is left of it.

        ``replayed`` counts the records the server acknowledged: never records it
        rejected, nor what a cut-short bisection left in the spill.
        """
        if self._abandon.is_set():
            return payload
        sent_before = self._counts["sent"]
        left = undelivered(payload, self._transport.send(payload, 0.0))
        self._counts["replayed"] += self._counts["sent"] - sent_before
        return left

    def _go_offline(self) -> None:
        """Schedule the next probe with exponential backoff; warn once per outage."""
        first, longest = self._probe_bounds()
        if self.offline_since is None:
            self.offline_since = time.monotonic()
            logger.warning("monitor client %s: monitor at %s unreachable; spilling to %s and retrying",
                           self.run_id, self._transport.base_url, self._spill_dir)
        delay = first if self._probe_delay is None else self._probe_delay
        self._next_probe = time.monotonic() + delay
        self._probe_delay = min(delay * 2, longest)

    def _spill_payload(self, payload: Payload) -> None:
        """Write to disk; without a usable spill the records are counted as dropped."""
        records = payload_records(payload)
        if self.spill is None:
            self._counts["unspillable"] += records
        elif self.spill.append(payload):  # a refused payload is counted by the spill itself
            self._counts["spilled"] += records
