"""Prometheus metrics of the service, correct with several uvicorn worker processes.

Each worker process counts into its own series; a scrape hits one worker, so with
``--workers N`` the counters are kept in prometheus_client's multiprocess mode: every
process writes memory-mapped files under ``PROMETHEUS_MULTIPROC_DIR`` and the scrape
sums them. The variable must be set before any worker imports prometheus_client, which
is why ``serve`` calls :func:`prepare_metrics_dir` before uvicorn starts its workers.

Counters only: rates (records per second, requests per second) come from ``rate()`` in
PromQL. Queue depth is not counted in-process at all but read from the database at
scrape time, so every process reports the same, true number.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from monitor import __version__
from monitor.rules.types import RuleTransition
from monitor.store.database import Database
from monitor.store.models import WebhookDelivery, utcnow

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Request latencies of this service: sub-millisecond reads up to multi-second bulk ingests.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUEUE_STATUSES = ("pending", "delivering", "failed")
disable_created_metrics()  # *_created series double the output and no dashboard reads them


class ServiceMetrics:
    """The service's own series. Built on first use, not at import: ``serve`` imports this
    module to prepare the multiprocess directory, and creating a metric there would already
    open a file in the directory it is about to create and empty."""

    def __init__(self) -> None:
        self.http_requests = Counter(
            "monitor_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
        )
        self.http_latency = Histogram(
            "monitor_http_request_duration_seconds", "Time from request start to the last response byte.",
            ["method", "route"], buckets=LATENCY_BUCKETS,
        )
        self.records_ingested = Counter("monitor_records_ingested", "Per-batch records stored (new ones only).")
        self.records_duplicate = Counter("monitor_records_duplicate",
                                         "Per-batch records dropped as already stored (retries).")
        self.records_late = Counter("monitor_records_late",
                                    "Per-batch records stored but not evaluated (at or below their rank's last "
                                    "evaluated step).")
        self.rule_evaluations = Counter("monitor_rule_evaluations", "Readings fed through the rule engine.",
                                        ["kind"])  # batch | epoch
        self.rule_transitions = Counter("monitor_rule_transitions", "Rules that fired or resolved.",
                                        ["rule", "kind", "severity"])
        self.decisions_served = Counter("monitor_decisions_served",
                                        "Answers of GET /escalation/decision, by decision.", ["decision"])
        self.webhook_deliveries = Counter("monitor_webhook_deliveries",
                                          "Webhook delivery attempts by outcome (delivered, retry, failed).",
                                          ["outcome"])


@lru_cache(maxsize=1)
def service_metrics() -> ServiceMetrics:
    """The process's metrics (created once, in the default registry)."""
    return ServiceMetrics()


# --- counts made in an ingest worker process ----------------------------------------------

# (counter attribute of ServiceMetrics, label values, amount)
CountIncrement = tuple[str, tuple[str, ...], float]
_deferred: list[CountIncrement] | None = None


def defer_counts() -> None:
    """From now on keep counter increments instead of applying them (in an ingest worker
    process: its own registry is never scraped, so the server process applies them)."""
    global _deferred
    _deferred = []


def take_deferred_counts() -> list[CountIncrement]:
    """The increments kept since the last call (empty unless ``defer_counts`` was called)."""
    global _deferred
    if _deferred is None:
        return []
    taken, _deferred = _deferred, []
    return taken


def apply_counts(increments: Sequence[CountIncrement]) -> None:
    """Apply increments an ingest worker kept, as if they had been counted here."""
    for name, labels, amount in increments:
        _count(name, labels, amount)


def _count(name: str, labels: tuple[str, ...], amount: float) -> None:
    if _deferred is not None:
        _deferred.append((name, labels, amount))
        return
    counter = getattr(service_metrics(), name)
    (counter.labels(*labels) if labels else counter).inc(amount)


# --- hooks called by the code that knows -------------------------------------------------


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count and time one HTTP request (called by the request middleware)."""
    metrics = service_metrics()
    metrics.http_requests.labels(method, route, str(status)).inc()
    metrics.http_latency.labels(method, route).observe(seconds)


def observe_ingest(accepted: int, duplicates: int, late: int = 0) -> None:
    """Count one ingestion request's outcome (call after the transaction committed)."""
    _count("records_ingested", (), accepted)
    _count("records_duplicate", (), duplicates)
    _count("records_late", (), late)


def observe_rules(kind: str, readings: int, transitions: Sequence[RuleTransition]) -> None:
    """Count readings evaluated and the fired/resolved transitions they caused."""
    _count("rule_evaluations", (kind,), readings)
    for item in transitions:
        _count("rule_transitions", (item.rule, item.kind, item.severity), 1)


def observe_decision(decision: str) -> None:
    """Count one decision answered to a trainer."""
    service_metrics().decisions_served.labels(decision).inc()


def observe_delivery(outcome: str) -> None:
    """Count one webhook attempt: ``delivered``, ``retry`` or ``failed`` (gave up)."""
    service_metrics().webhook_deliveries.labels(outcome).inc()


# --- process setup -----------------------------------------------------------------------


def prepare_metrics_dir(workers: int) -> Path | None:
    """Make multiprocess mode usable before uvicorn forks its workers; returns the dir in use.

    With one worker and no ``PROMETHEUS_MULTIPROC_DIR`` nothing is needed (plain in-process
    metrics, process collector included). With several workers and the variable unset, a
    fresh temporary directory is created and removed at exit. A directory given by the
    operator is created if missing and emptied of the previous run's files, because
    counters left there would be summed into the new run's totals.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if not configured and workers <= 1:
        return None
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="monitor-metrics-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ[MULTIPROC_ENV] = str(path)
    log.info("prometheus multiprocess metrics in %s", path)
    return path


def multiprocess_enabled() -> bool:
    """Whether this process writes its metrics to the shared directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


# --- scraping ----------------------------------------------------------------------------


class DatabaseCollector(Collector):
    """Read at scrape time: outbox depth by status, age of the oldest pending row, build info."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("monitor_build_info", "Version of the running service.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        try:
            counts, oldest = self._read_outbox()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database is down
            log.warning("metrics: could not read the outbox: %s", exc)
            return
        depth = GaugeMetricFamily("monitor_outbox_deliveries", "Webhook outbox rows not yet delivered, by status.",
                                  labels=["status"])
        for status in QUEUE_STATUSES:
            depth.add_metric([status], float(counts.get(status, 0)))
        yield depth
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("monitor_outbox_oldest_pending_age_seconds",
                                "Age of the oldest pending delivery (0 when none is pending).", value=max(age, 0.0))

    def _read_outbox(self) -> tuple[dict[str, int], datetime | None]:
        """Counts of undelivered rows (the status index serves it) and the oldest pending row."""
        status_col = WebhookDelivery.status
        with self.db.read_session() as session:
            rows = session.execute(
                select(status_col, func.count()).where(status_col.in_(QUEUE_STATUSES)).group_by(status_col)
            ).all()
            oldest = session.scalar(select(func.min(WebhookDelivery.created_at)).where(status_col == "pending"))
        if oldest is not None and oldest.tzinfo is None:  # SQLite aggregates skip the column type
            oldest = oldest.replace(tzinfo=utcnow().tzinfo)
        return {status: int(count) for status, count in rows}, oldest


def render_metrics(db: Database) -> bytes:
    """The exposition text: this process's (or every worker's) counters plus database gauges."""
    service_metrics()  # a scrape before any request still lists this process's series
    if multiprocess_enabled():
        counters = CollectorRegistry()
        multiprocess.MultiProcessCollector(counters)
    else:
        counters = REGISTRY
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(DatabaseCollector(db))
    return generate_latest(counters) + generate_latest(gauges)
