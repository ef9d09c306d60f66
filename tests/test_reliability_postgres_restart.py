"""PostgreSQL restarted (cleanly and by crash) while trainers stream and poll decisions.

The test owns a private cluster (tests/support/private_postgres.py), so stopping it
disturbs nobody else's tests. While the database is down the service must answer
503 with a JSON ``detail`` (never 500, never die); the trainer's client retries or
spills; once the database is back, pool_pre_ping replaces the dead connections
and every logged step ends up stored exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.private_postgres import PrivatePostgres, unavailable_reason
from tests.support.reliability import assert_stored_exactly_once, wait_until
from tests.support.service import LiveService
from tests.support.trainer_proc import TrainerProcess

RUNS = 3
STEPS = 4000
RATE = 300  # steps per second per trainer: ~13 s of streaming, two outages inside it


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A cluster of our own that we may stop and start."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = PrivatePostgres().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


class DecisionPoller(threading.Thread):
    """Asks for decisions in a loop and tallies the answers' status codes (None: no answer)."""

    def __init__(self, base_url: str, token: str, run_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        self.run_ids = run_ids
        self.statuses: Counter[int | None] = Counter()
        self.bad_bodies: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for run_id in self.run_ids:
                self._ask(run_id)
            time.sleep(0.05)
        self.client.close()

    def _ask(self, run_id: str) -> None:
        try:
            response = self.client.get("/escalation/decision", params={"run_id": run_id})
        except httpx.HTTPError:
            self.statuses[None] += 1
            return
        self.statuses[response.status_code] += 1
        if response.status_code == 503 and ("detail" not in response.json() or "retry-after" not in response.headers):
            self.bad_bodies.append(response.text)


def outage_answer(service: LiveService) -> httpx.Response:
    """What an API call gets while the database is down."""
    return service.client.get("/api/v1/runs")


@pytest.mark.slow
@pytest.mark.postgres
def test_service_survives_postgres_restarts_and_loses_nothing(
        private_pg: PrivatePostgres, token: str, tmp_path: Path) -> None:
    service = LiveService(private_pg.create_database("monitor"), token, tmp_path / "service.log").start()
    run_ids = [f"pg-restart-{n}" for n in range(RUNS)]
    may_close = tmp_path / "may-close"  # trainers close (their last replay) once PostgreSQL is back for good
    trainers = [TrainerProcess(tmp_path / run_id, service.base_url, token, run_id, steps=STEPS, rate=RATE,
                               retry_budget=1.0, close_after=str(may_close)) for run_id in run_ids]
    poller = DecisionPoller(service.base_url, token, run_ids)
    try:
        for trainer in trainers:
            trainer.wait_progress(500)
        poller.start()
        for mode, progress in (("fast", 1200), ("immediate", 2400)):
            for trainer in trainers:
                trainer.wait_progress(progress)
            spilled_before = sum(trainer.spilled() for trainer in trainers)
            private_pg.stop(mode)
            down = outage_answer(service)
            assert down.status_code == 503, down.text
            assert down.json()["detail"] and down.headers["retry-after"]
            assert httpx.get(f"{service.base_url}/healthz").status_code == 503
            # Down until a client gave up retrying and spilled: the outage reached the clients.
            wait_until(lambda: sum(trainer.spilled() for trainer in trainers) > spilled_before, 60, 0.05,
                       what=f"a client spilling during the {mode} outage")
            private_pg.start()
            wait_until(lambda: outage_answer(service).status_code == 200, 30, what="service recovery")

        may_close.touch()
        results = [trainer.wait(120) for trainer in trainers]
        poller.stopping.set()
        poller.join(10)
        for run_id, result in zip(run_ids, results):
            stats = result["stats"]
            assert result["logged"] == STEPS and stats["dropped"] == 0, stats
            assert_stored_exactly_once(service.client, run_id, range(STEPS))
        assert service.process is not None and service.process.poll() is None, "the service died"
        assert set(poller.statuses) <= {200, 503}, poller.statuses
        assert poller.statuses[503] > 0 and poller.statuses[200] > 0, poller.statuses
        assert not poller.bad_bodies, poller.bad_bodies[:3]
        assert sum(result["stats"]["spilled"] for result in results) > 0, "no outage reached the clients"
    finally:
        poller.stopping.set()
        for trainer in trainers:
            trainer.kill()
        service.close()
