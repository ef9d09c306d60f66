"""EscalationGate against the real service: decisions, caching and the unreachable policy."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.service import LiveService, free_port
from trainer_client import EscalationGate, MonitorClient

FAST_SPANS = {"monitor": {"batch_for": 2, "batch_resolve": 2}}


def report(service: LiveService, run_id: str, tmp_path: Path, attention_max: float, steps: range,
           rank: int = 0) -> None:
    """Stream records through the real client (the run is created with short rule spans)."""
    with MonitorClient(service.base_url, service.token, run_id, config=FAST_SPANS, spill_dir=tmp_path / "spill",
                       flush_interval=0.05) as client:
        for step in steps:
            client.log(step, 0, rank=rank, attention_max=attention_max, loss=0.5)
        assert client.flush(20)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers a request."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_healthy_run_continues_then_answers_from_cache(sqlite_service: LiveService, tmp_path: Path) -> None:
    report(sqlite_service, "healthy", tmp_path, 0.9, range(5))
    with EscalationGate(sqlite_service.base_url, sqlite_service.token, "healthy") as gate:
        assert gate.should_escalate(epoch=0) is True
        first = gate.decision()
        assert (first.decision, first.source, first.reasons) == ("continue", "service", [])
        assert gate.should_escalate(epoch=0) is True  # same epoch: no new poll
        assert gate.decision().source == "cached"


def test_paused_run_pauses_with_the_servers_reasons(sqlite_service: LiveService, tmp_path: Path) -> None:
    report(sqlite_service, "collapsed", tmp_path, 0.005, range(4))
    with EscalationGate(sqlite_service.base_url, sqlite_service.token, "collapsed") as gate:
        assert gate.should_escalate() is False
        decision = gate.decision()
    assert decision.decision == "pause" and decision.source == "service"
    assert [r["rule"] for r in decision.reasons] == ["attention_collapse"]
    assert any(a["action"] == "hold_meta_escalation" for a in decision.actions)
    assert "attention_collapse" in decision.summary()


def test_polls_every_n_steps_and_caches_in_between(sqlite_service: LiveService, tmp_path: Path) -> None:
    report(sqlite_service, "steps", tmp_path, 0.9, range(3))
    with EscalationGate(sqlite_service.base_url, sqlite_service.token, "steps", every_n_steps=10) as gate:
        assert gate.should_escalate(step=0) is True
        report(sqlite_service, "steps", tmp_path, 0.005, range(3, 8))  # the run collapses now
        assert gate.should_escalate(step=5) is True  # cached: not due before step 10
        assert gate.decision().source == "cached"
        assert gate.should_escalate(step=10) is False
        assert gate.decision().source == "service"


def test_unreachable_monitor_pauses_by_default(tmp_path: Path) -> None:
    with EscalationGate(f"http://127.0.0.1:{free_port()}", "t", "any") as gate:
        assert gate.should_escalate(epoch=3) is False
        decision = gate.decision()
    assert decision.source == "unreachable"
    assert decision.reasons[0]["message"].startswith("monitor unreachable: ")
    assert decision.note and decision.note.startswith("monitor unreachable")


def test_unreachable_monitor_can_be_configured_to_continue() -> None:
    with EscalationGate(f"http://127.0.0.1:{free_port()}", "t", "any", on_unreachable="continue") as gate:
        assert gate.should_escalate(epoch=0) is True
        decision = gate.decision()
    assert decision.source == "unreachable" and decision.reasons == []
    assert "monitor unreachable" in (decision.note or "")


def test_unknown_run_pauses_with_a_clear_reason(sqlite_service: LiveService) -> None:
    with EscalationGate(sqlite_service.base_url, sqlite_service.token, "never-reported") as gate:
        assert gate.should_escalate(epoch=0) is False
        decision = gate.decision()
    assert decision.source == "service" and decision.reasons[0]["rule"] == "run_not_found"
    assert "not known to the monitor" in decision.reasons[0]["message"]


def test_bad_token_follows_the_unreachable_policy(sqlite_service: LiveService) -> None:
    with EscalationGate(sqlite_service.base_url, "wrong-token", "x") as gate:
        assert gate.should_escalate() is False
        assert "HTTP 401" in gate.decision().reasons[0]["message"]
    with EscalationGate(sqlite_service.base_url, "wrong-token", "x", on_unreachable="continue") as gate:
        assert gate.should_escalate() is True


def test_a_silent_monitor_never_stalls_training_beyond_the_timeout(silent_port: int) -> None:
    with EscalationGate(f"http://127.0.0.1:{silent_port}", "t", "run", timeout=1.0) as gate:
        started = time.monotonic()
        assert gate.should_escalate(epoch=0) is False
        elapsed = time.monotonic() - started
    # Generous: what matters is that the poll ends at its timeout instead of waiting for an
    # answer that never comes; the trickling server in test_reliability_gate.py tells a poll
    # deadline from per-read timeouts.
    assert elapsed < 10.0, f"poll took {elapsed:.2f}s with timeout=1.0"
    assert "Timeout" in gate.decision().reasons[0]["message"]


def test_invalid_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="on_unreachable"):
        EscalationGate("http://127.0.0.1:1", "t", "r", on_unreachable="maybe")  # type: ignore[arg-type]
