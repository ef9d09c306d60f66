"""SIGKILL the service while a real trainer streams; restart it on the same port and database.

What must hold: every step the trainer logged is stored exactly once (the client
retries or spills what the dead process never answered, the server deduplicates
what it had committed), and decisions answer the same after the restart, because
rule states live in the database, not in the process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.reliability import (COLLAPSE_CONFIG, assert_stored_exactly_once, decision, fire_collapse,
                                       fired_events, firing_rules, wait_until)
from tests.support.service import LiveService
from tests.support.trainer_proc import TrainerProcess

STEPS = 6000
RATE = 600  # steps per second: a fast trainer, ~10 s of streaming
KILLS = 2


@pytest.mark.slow
def test_sigkill_mid_stream_stores_every_step_once_and_keeps_decisions(
        database_url: str, token: str, tmp_path: Path) -> None:
    service = LiveService(database_url, token, tmp_path / "service.log").start()
    trainer: TrainerProcess | None = None
    # The trainer closes (its last replay) only once the test says the service is back: how
    # long a restart takes on a busy box must not decide whether the spill is replayed.
    may_close = tmp_path / "may-close"
    try:
        fire_collapse(service.client, "fired-before")
        static_before = decision(service.client, "fired-before")
        trainer = TrainerProcess(tmp_path / "trainer", service.base_url, token, "streamed", steps=STEPS,
                                 rate=RATE, collapse=True, config=COLLAPSE_CONFIG, retry_budget=2.0,
                                 close_after=str(may_close))
        trainer.wait_progress(1000)
        wait_until(lambda: decision(service.client, "streamed")["decision"] == "pause", 20,
                   what="the streamed run's rule firing")
        stream_before = decision(service.client, "streamed")

        for kill in range(KILLS):
            trainer.wait_progress(1000 + kill * 2000)
            service.kill()
            trainer.wait_progress(trainer.progress() + 300)  # the trainer keeps logging into a dead port
            service.start()
            assert decision(service.client, "fired-before") == static_before, "decision changed across restart"

        may_close.touch()
        result = trainer.wait(120)
        stats = result["stats"]
        assert result["logged"] == STEPS
        assert stats["dropped"] == 0 and stats["rejected"] == 0 and stats["invalid"] == 0, stats
        assert_stored_exactly_once(service.client, "streamed", range(STEPS))
        stream_after = decision(service.client, "streamed")
        assert stream_after["decision"] == stream_before["decision"] == "pause"
        assert firing_rules(stream_after) == firing_rules(stream_before)
        assert stream_after["step"] == STEPS - 1
        # The rules fired once; a restart did not make them fire again.
        assert set(fired_events(service.client, "streamed").values()) == {1}
        assert "Traceback" not in service.log_tail(200_000)
    finally:
        if trainer is not None:
            trainer.kill()
        service.close()
