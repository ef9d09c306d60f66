"""Several server processes on one PostgreSQL database behave as one service.

Batches of one run are spread over two ``serve`` processes (or one with ``--workers 2``)
from concurrent threads, retries included, through a healthy stretch, an attention
collapse that fires the rules, and a recovery. At every checkpoint every process gives
the same decision, the rules fired and resolved exactly once, and no record was stored
twice: per-run serialisation and stored rule states work across processes.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.service import LiveService

pytestmark = pytest.mark.postgres

RUN_ID = "multi-worker"
CONFIG = {"monitor": {"batch_for": 3}}
BATCH = 10
HEALTHY = {"lora_norm_mean": 1.2, "lora_norm_max": 1.8, "stop_logit_var": 0.8, "attention_max": 0.7,
           "attention_entropy": 3.0, "logit_min": -20.0, "logit_max": 25.0, "accuracy": 0.9, "loss": 0.3,
           "nan_count": 0.0, "grad_norm": 1.5}
COLLAPSED = {**HEALTHY, "attention_max": 0.01}
# (name, steps, readings, decision expected once every batch of the phase is stored)
PHASES = [
    ("healthy", range(0, 200), HEALTHY, "continue"),
    ("collapse", range(200, 260), COLLAPSED, "pause"),
    ("recovery", range(260, 420), HEALTHY, "continue"),
]


@pytest.fixture(params=["two-processes", "one-process-two-workers"])
def endpoints(request: pytest.FixtureRequest, postgres_url: str, token: str, tmp_path: Path) -> Iterator[list[str]]:
    """Base URLs to alternate between: two services, or the same one with two workers."""
    if request.param == "two-processes":
        services = [LiveService(postgres_url, token, tmp_path / f"service-{n}.log").start() for n in range(2)]
    else:
        services = [LiveService(postgres_url, token, tmp_path / "service.log", workers=2).start()]
    try:
        yield [service.base_url for service in itertools.islice(itertools.cycle(services), 2)]
    finally:
        for service in services:
            service.close()


def test_interleaved_ingestion_gives_one_answer(endpoints: list[str], token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.put(f"{endpoints[0]}/api/v1/runs/{RUN_ID}", json={"config": CONFIG}, headers=headers).is_success
    sent: set[int] = set()
    for name, steps, readings, expected in PHASES:
        send_concurrently(endpoints, headers, batches(steps, readings))
        sent.update(steps)
        answers = [get(url, headers, "/escalation/decision", run_id=RUN_ID) for url in endpoints * 2]
        assert all(answer == answers[0] for answer in answers), (name, answers)
        assert answers[0]["decision"] == expected, (name, answers[0])
        assert answers[0]["step"] == max(sent)
        runs = [get(url, headers, f"/api/v1/runs/{RUN_ID}") for url in endpoints]
        assert runs[0] == runs[1]
        assert runs[0]["record_count"] == len(sent), name
    events = [get(url, headers, f"/api/v1/runs/{RUN_ID}/events") for url in endpoints]
    assert events[0] == events[1]
    transitions = Counter((e["rule"], e["kind"]) for e in events[0]["rule_events"])
    assert transitions[("attention_collapse", "fired")] == 1, transitions
    assert transitions[("attention_collapse", "resolved")] == 1, transitions
    assert [d["decision"] for d in events[0]["decisions"]] == ["pause", "continue"]
    stored = get(endpoints[1], headers, f"/api/v1/runs/{RUN_ID}/diagnostics", limit=1000)["records"]
    assert [record["step"] for record in stored] == sorted(sent)


def batches(steps: range, readings: dict[str, float]) -> list[list[dict]]:
    """Records of the phase cut into batches of BATCH steps (epochs of 100 steps)."""
    records = [{"step": step, "epoch": step // 100, **readings} for step in steps]
    return [records[i:i + BATCH] for i in range(0, len(records), BATCH)]


def send_concurrently(endpoints: list[str], headers: dict[str, str], parts: list[list[dict]]) -> None:
    """Batch i goes to endpoint i % 2 from a pool of threads; every third is retried on the other."""
    local = threading.local()

    def send(index: int) -> list[int]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(headers=headers, timeout=60)
        targets = [endpoints[index % 2]] + ([endpoints[(index + 1) % 2]] if index % 3 == 0 else [])
        body = {"records": parts[index]}
        return [local.client.post(f"{url}/api/v1/runs/{RUN_ID}/diagnostics", json=body).status_code
                for url in targets]

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(itertools.chain.from_iterable(pool.map(send, range(len(parts)))))
    assert set(statuses) == {200}, Counter(statuses)


def get(base_url: str, headers: dict[str, str], path: str, **params: object) -> dict:
    """GET over a fresh connection (with several workers, likely a different process each time)."""
    response = httpx.get(f"{base_url}{path}", params=params, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()
