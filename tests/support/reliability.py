"""Assertions shared by the reliability tests: exactly-once storage, decisions, waiting."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import httpx

COLLAPSE_CONFIG = {"monitor": {"batch_for": 3}}


def wait_until(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.1,
               what: str = "condition") -> None:
    """Poll ``predicate``; AssertionError naming ``what`` if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(interval)


def stored_steps(client: httpx.Client, run_id: str, rank: int = 0) -> list[int]:
    """Every stored step of one rank, as the read API returns them page by page (duplicates would show)."""
    steps: list[int] = []
    params: dict[str, Any] = {"rank": rank}
    while True:
        response = client.get(f"/api/v1/runs/{run_id}/diagnostics", params=params)
        response.raise_for_status()
        body = response.json()
        steps += [record["step"] for record in body["records"]]
        if body["next_cursor"] is None:
            return steps
        params["cursor"] = body["next_cursor"]


def assert_stored_exactly_once(client: httpx.Client, run_id: str, steps: Iterable[int]) -> None:
    """record_count equals the steps sent, and the read API lists each of them once."""
    expected = sorted(steps)
    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["record_count"] == len(expected), (run_id, run["record_count"], len(expected))
    got = stored_steps(client, run_id)
    repeated = {step: count for step, count in Counter(got).items() if count > 1}
    assert not repeated, f"{run_id}: steps stored more than once: {list(repeated)[:20]}"
    missing = sorted(set(expected) - set(got))
    assert not missing, f"{run_id}: {len(missing)} steps missing, first {missing[:20]}"
    assert sorted(got) == expected


def decision(client: httpx.Client, run_id: str) -> dict[str, Any]:
    """The escalation answer for a run (raises on an error status)."""
    response = client.get("/escalation/decision", params={"run_id": run_id})
    response.raise_for_status()
    return response.json()


def firing_rules(answer: dict[str, Any]) -> list[tuple[str, int]]:
    """(rule, rank) of the reasons behind a decision, order-independent."""
    return sorted((reason["rule"], reason["rank"]) for reason in answer.get("reasons", []))


def fire_collapse(client: httpx.Client, run_id: str, steps: int = 30) -> None:
    """Create ``run_id`` and ingest collapsed attention until the pause rule fires."""
    client.put(f"/api/v1/runs/{run_id}", json={"config": COLLAPSE_CONFIG}).raise_for_status()
    records = [{"step": step, "epoch": 0, "attention_max": 0.001, "accuracy": 0.5} for step in range(steps)]
    client.post(f"/api/v1/runs/{run_id}/diagnostics", json={"records": records}).raise_for_status()
    assert decision(client, run_id)["decision"] == "pause"


def fired_events(client: httpx.Client, run_id: str) -> Counter[tuple[str, int]]:
    """How many times each (rule, rank) fired, from the run's event history."""
    events = client.get(f"/api/v1/runs/{run_id}/events").json()["rule_events"]
    return Counter((event["rule"], event["rank"]) for event in events if event["kind"] == "fired")
