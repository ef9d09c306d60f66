"""The time sweep behind ``stale:`` rules: a rank that stopped reporting fires without a reading.

Readings cannot say that readings stopped (Grafana's NoData), so a background thread asks
every ``MONITOR_STALE_SWEEP_SECONDS`` which runs have a stale-stream rule state that is not
firing yet, and sweeps each under the run's lock, in the same transaction shape as
ingestion. Several server processes may sweep the same run: the lock serialises them and
a rule fires only once (its state is already firing the second time).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from monitor.evaluation import sweep_stale
from monitor.store.database import Database
from monitor.store.models import RuleStateRow
from monitor.store.runs import RunNotFound, get_run

log = logging.getLogger(__name__)
STALE_RULES = ("stream_stale",)


def sweep_once(db: Database, public_url: str, now: float | None = None) -> int:
    """One pass over the runs with an armed stale rule; returns the transitions made."""
    with db.read_session() as session:
        query = select(RuleStateRow.run_id).where(RuleStateRow.status != "firing").distinct()
        query = query.where(RuleStateRow.rule.in_(STALE_RULES))
        run_ids = list(session.scalars(query))
    made = 0
    for run_id in run_ids:
        try:
            with db.write_session() as session:
                made += sweep_stale(session, get_run(session, run_id, lock=True), public_url, now)
        except RunNotFound:
            continue  # deleted meanwhile (retention)
    return made


class StaleSweeper:
    """A daemon thread calling :func:`sweep_once` every ``seconds`` (0 turns it off)."""

    def __init__(self, db: Database, public_url: str, seconds: float) -> None:
        self.db, self.public_url, self.seconds = db, public_url, seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.seconds <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="stale-sweep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                sweep_once(self.db, self.public_url)
            except Exception:  # noqa: BLE001 - a failed pass (database down) is retried next time
                log.warning("stale-stream sweep failed; retrying in %.0fs", self.seconds, exc_info=True)
