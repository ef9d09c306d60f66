"""Non-blocking diagnostics client for the Training Health Monitor.

Modelled on OpenTelemetry's ``BatchSpanProcessor``: :meth:`MonitorClient.log` only
appends a tuple to a bounded deque (a few microseconds, never raises, never does
I/O); one daemon thread converts (:mod:`trainer_client.payload`), batches and POSTs
(:mod:`trainer_client.transport`). Transient failures are retried with exponential
backoff and jitter; past a short retry budget payloads go to an on-disk spill
(:mod:`trainer_client.spill`) and are replayed in order once the service answers --
also by the next process of the same run. The server deduplicates on (run, rank,
step), so a retry never doubles a record. This module owns the queue and the sender
thread; :mod:`trainer_client.delivery` the offline/replay decisions, the others the
formats, the wire and the disk.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_client.delivery import Delivery
from trainer_client.payload import Payload, encode_epoch, encode_record, run_body, session_id
from trainer_client.spill import default_spill_dir
from trainer_client.transport import Transport

logger = logging.getLogger(__name__)

_STOP = object()


@dataclass
class _EpochItem:
    """An epoch summary travelling through the queue behind the batches it closes."""

    payload: Payload
    done: threading.Event
    decision: str | None = None


class MonitorClient:
    """Streams per-batch diagnostics of one run (any rank) to the monitor, losing nothing.

    ``config`` is sent as strict JSON: NaN/Infinity values become the strings "NaN",
    "Infinity" and "-Infinity" (with one WARNING naming them), since the monitor refuses
    non-finite numbers in a config; numpy/torch scalars become numbers, other objects text.

    ``session`` (default on): every record carries ``session``, an id made once per client
    (process start), so that the monitor can tell a resumed trainer whose step counter
    rewound from late records (a new segment, design section 6). ``False`` sends none;
    a string is used as given. A monitor that does not know the field yet answers 422;
    the client then sends without it (said once, ``stats()["refused_fields"]``).
    """

    PROBE_MIN_S = 0.5  # first re-probe of an unreachable service; doubles up to PROBE_MAX_S
    PROBE_MAX_S = 5.0

    def __init__(self, base_url: str, token: str, run_id: str, *, run_name: str | None = None,
                 project: str | None = None, config: dict[str, Any] | None = None,
                 escalation_start_epoch: int | None = None, max_queue: int = 100_000,
                 batch_size: int = 500, flush_interval: float = 0.5, spill_dir: str | Path | None = None,
                 max_spill_bytes: int = 256 * 1024 * 1024, timeout: float = 5.0,
                 retry_budget: float = 5.0, session: bool | str = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.run_id = run_id
        self.timeout = timeout
        self.retry_budget = retry_budget
        self._token = token
        self.session = session_id(session)
        self._run_body = run_body(run_id, {"name": run_name, "project": project, "config": config,
                                            "escalation_start_epoch": escalation_start_epoch})
        self._max_queue = max(1, int(max_queue))
        self._batch_size = max(1, int(batch_size))
        self._flush_interval = flush_interval
        self._spill_dir = Path(spill_dir) if spill_dir is not None else default_spill_dir(run_id)
        self._max_spill_bytes = max_spill_bytes
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._abandon = threading.Event()  # set by a timed-out close(): spill the rest, no more I/O
        self._counts = dict.fromkeys(("sent", "accepted", "duplicates", "spilled", "replayed", "rejected",
                                      "invalid", "invalid_readings", "unspillable", "epochs_sent"), 0)
        self._queue_full_drops = 0
        self._delivery: Delivery | None = None  # made by the sender thread
        self._thread = threading.Thread(target=self._run, name=f"monitor-client-{run_id}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ----------------------------------------------------------------- training-thread API
    def log(self, step: Any, epoch: Any = None, rank: Any = 0, **readings: Any) -> None:
        """Enqueue one batch's readings; O(1), no I/O, never raises (drops and counts when full).

        ``step`` may also be a whole record dict (``DiagnosticsCollector`` sink). Readings may be
        floats, 0-dim tensors or numpy scalars; names outside the schema go to ``extra``.
        """
        try:
            queue = self._queue
            if self._closed or len(queue) >= self._max_queue:
                self._queue_full()
                return
            queue.append((step, epoch, rank, time.time(), readings))
            if len(queue) == self._batch_size:
                self._wake.set()
        except Exception:  # noqa: BLE001 - monitoring must never break training
            pass

    def _queue_full(self) -> None:
        """Count a dropped record; warn on the first and every 10,000th."""
        self._queue_full_drops += 1
        if self._queue_full_drops % 10_000 == 1:
            why = "client is closed" if self._closed else f"queue is full ({self._max_queue} records)"
            logger.warning("monitor client %s: %s; %d record(s) dropped so far", self.run_id, why,
                           self._queue_full_drops)

    def epoch_end(self, epoch: int, rank: int = 0, eval_accuracy: float | None = None,
                  train_accuracy: float | None = None, grad_explosion_events: int | None = None,
                  lr_backoff_events: int | None = None, max_nan_streak: int | None = None, *,
                  extra: dict[str, Any] | None = None, wait: float | None = None) -> str | None:
        """Send an epoch summary after every batch logged before it; return the run's decision.

        ``extra``: further epoch figures, numbers or short lists of numbers (at most 64 each);
        an unusable one is left out with a WARNING naming it. Waits at most ``wait`` seconds
        (default: the client timeout) and returns None if the summary was not delivered by
        then (it is still delivered or spilled later).
        """
        if self._closed:
            return None
        dropped: list[str] = []
        try:
            payload = encode_epoch(epoch, rank, eval_accuracy, train_accuracy, grad_explosion_events,
                                   lr_backoff_events, max_nan_streak, extra, dropped)
        except Exception as exc:  # noqa: BLE001 - never raised into the training loop
            logger.error("monitor client %s: epoch summary for epoch %r not sent: %s", self.run_id, epoch, exc)
            return None
        if dropped:
            self._counts["invalid_readings"] += len(dropped)
            logger.warning("monitor client %s: epoch %r extras not sent (not a number or a list of at most 64 "
                           "numbers, or more than 64 of them): %s", self.run_id, epoch, ", ".join(dropped[:20]))
        item = _EpochItem(payload, threading.Event())
        self._queue.append(item)
        self._wake.set()
        item.done.wait(self.timeout if wait is None else wait)
        return item.decision

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything logged so far is delivered or spilled; False on timeout."""
        if not self._thread.is_alive():
            return not self._queue
        marker = threading.Event()
        self._queue.append(marker)
        self._wake.set()
        return marker.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Flush, stop the sender thread and release the spill file (idempotent; runs at exit)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._queue.append(_STOP)
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("monitor client %s: close() timed out; spilling %d queued item(s) to %s",
                           self.run_id, len(self._queue), self._spill_dir)
            self._abandon.set()
            self._thread.join(self.timeout + 5.0)
        spill = self._delivery.spill if self._delivery is not None else None
        if spill is not None and not self._thread.is_alive() and spill.pending():
            logger.warning("monitor client %s: %d byte(s) of undelivered diagnostics left in %s; the next "
                           "process of this run (or `python -m trainer_client replay --run-id %s`) delivers "
                           "them", self.run_id, spill.total_bytes, self._spill_dir, self.run_id)

    def stats(self) -> dict[str, Any]:
        """Delivery counters (records unless named otherwise) and current backlog.

        ``sent`` = ``accepted`` + ``duplicates``: records the server acknowledged, replayed
        ones included; ``spilled``: written to the spill by this process; ``replayed``:
        spilled records (also a previous process's) acknowledged on replay; ``dropped`` =
        ``queue_dropped`` + ``spill_dropped`` + ``rejected`` (refused by the server) +
        ``invalid`` (unusable step/epoch/rank). After close, ``spill_bytes`` and
        ``spill_pending`` describe what was left on disk for the next process.
        """
        spill = self._delivery.spill if self._delivery is not None else None
        out: dict[str, Any] = dict(self._counts)
        out["queue_dropped"] = self._queue_full_drops
        out["spill_dropped"] = out.pop("unspillable") + (spill.dropped_records if spill is not None else 0)
        out["dropped"] = self._queue_full_drops + out["spill_dropped"] + out["rejected"] + out["invalid"]
        out["queue_depth"] = len(self._queue)
        out["spill_bytes"] = spill.total_bytes if spill is not None else 0
        out["spill_pending"] = bool(spill is not None and spill.pending())
        out["offline"] = self._offline()
        out["session"] = self.session
        refused = self._delivery.refused_fields() if self._delivery is not None else set()
        out["refused_fields"] = sorted(refused)
        return out

    def __enter__(self) -> MonitorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- sender thread
    def _run(self) -> None:
        """Sender loop: replay old spill first, then batches and queue items in FIFO order."""
        transport: Transport | None = None
        try:
            transport = Transport(self.base_url, self._token, self.run_id, self._run_body, self.timeout,
                                  self._counts, self._offline)
            delivery = Delivery(self.run_id, transport, self._counts, self.retry_budget,
                                lambda: (self.PROBE_MIN_S, self.PROBE_MAX_S), self._abandon)
            delivery.open_spill(self._spill_dir, self._max_spill_bytes)
            self._delivery = delivery
            while self._step(delivery):
                pass
        except Exception:  # noqa: BLE001 - log(), flush() and close() keep working without us
            logger.exception("monitor client %s: sender thread failed; records will be dropped", self.run_id)
        finally:
            if transport is not None:
                transport.close()
            if self._delivery is not None and self._delivery.spill is not None:
                self._delivery.spill.close()  # it keeps reporting what is left on disk

    def _offline(self) -> bool:
        """Whether the service is known to be unreachable right now."""
        return self._delivery is not None and self._delivery.offline_since is not None

    def _step(self, delivery: Delivery) -> bool:
        """One round: take up to a batch and the special item behind it; False after stop."""
        if not self._queue:
            self._wake.wait(self._idle_wait(delivery))
            self._wake.clear()
        batch, special = self._take()
        try:
            self._send_batch(delivery, batch)
            self._handle(delivery, special)
        finally:
            if isinstance(special, (threading.Event, _EpochItem)):
                (special if isinstance(special, threading.Event) else special.done).set()
        return special is not _STOP

    def _send_batch(self, delivery: Delivery, batch: list[Any]) -> None:
        """Encode (one bad record costs only itself) and deliver or spill one batch."""
        records = []
        for item in batch:
            try:
                record = encode_record(item, self._counts)
            except Exception:  # noqa: BLE001 - an input nobody foresaw: drop and count that record only
                logger.exception("monitor client %s: cannot encode a record; dropped", self.run_id)
                self._counts["invalid"] += 1
                continue
            if record:
                if self.session is not None:
                    record["session"] = self.session
                records.append(record)
        if not records:
            return
        try:
            delivery.deliver({"records": records})
        except Exception:  # noqa: BLE001 - the sender must survive anything
            logger.exception("monitor client %s: sender error; %d record(s) lost", self.run_id, len(records))
            self._counts["invalid"] += len(records)

    def _handle(self, delivery: Delivery, special: Any) -> None:
        """The item behind a batch: an epoch summary, a flush/close (a last replay), or idleness."""
        try:
            if isinstance(special, _EpochItem):
                result = delivery.deliver(special.payload)
                special.decision = result.get("decision") if isinstance(result, dict) else None
            elif special is _STOP or isinstance(special, threading.Event):
                delivery.backlog(force=True)  # flush()/close(): try the spill now, whatever the probe schedule
            else:
                delivery.backlog()  # idle: probe the service when due and replay if it is back
        except Exception:  # noqa: BLE001 - the sender must survive anything
            logger.exception("monitor client %s: sender error", self.run_id)

    def _idle_wait(self, delivery: Delivery) -> float:
        """Sleep until the next flush interval, or the next probe if that comes sooner."""
        if delivery.pending():
            return max(0.01, min(self._flush_interval, delivery.seconds_to_probe()))
        return self._flush_interval

    def _take(self) -> tuple[list[Any], Any]:
        """Pop records up to ``batch_size``, stopping at the first non-record item."""
        batch: list[Any] = []
        queue = self._queue
        while queue and len(batch) < self._batch_size:
            item = queue.popleft()
            if type(item) is tuple:
                batch.append(item)
            else:
                return batch, item
        return batch, None
