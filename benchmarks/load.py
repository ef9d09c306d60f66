"""Synthetic diagnostics and the HTTP load that pushes them into our service.

Bodies are JSON-encoded before the clock starts, so the load generator's own CPU
(on a 2-core machine shared with the server) stays small and equal across runs.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Sequence

import httpx

# The 8 readings a trainer logs per batch in these benchmarks (log() cost, ingestion, footprint).
READINGS8: tuple[str, ...] = (
    "loss", "accuracy", "grad_norm", "lora_norm_mean", "lora_norm_max", "stop_logit_var",
    "attention_entropy", "logit_max",
)
STEPS_PER_EPOCH = 10_000


def readings_at(step: int, rng: random.Random) -> dict[str, float]:
    """Plausible, healthy values (no rule fires, so we measure the steady state)."""
    return {
        "loss": 2.0 / (1 + step / 5000) + rng.random() * 0.05,
        "accuracy": min(0.99, 0.3 + step / 2e6) + rng.random() * 0.01,
        "grad_norm": 1.0 + rng.random() * 0.5,
        "lora_norm_mean": 1.0 + rng.random() * 0.2,
        "lora_norm_max": 1.4 + rng.random() * 0.3,
        "stop_logit_var": 0.5 + rng.random() * 0.3,
        "attention_entropy": 3.0 + rng.random() * 0.5,
        "logit_max": 10.0 + rng.random() * 5,
    }


def make_records(first: int, count: int, rank: int = 0, seed: int = 0) -> list[dict]:
    """``count`` consecutive batches starting at step ``first``."""
    rng = random.Random(seed * 1_000_003 + first)
    return [{"step": s, "epoch": s // STEPS_PER_EPOCH, "rank": rank, **readings_at(s, rng)}
            for s in range(first, first + count)]


def make_bodies(total: int, per_request: int, rank: int = 0, first: int = 0) -> list[bytes]:
    """Pre-encoded POST bodies covering steps [first, first + total)."""
    bodies = []
    for start in range(first, first + total, per_request):
        count = min(per_request, first + total - start)
        bodies.append(json.dumps({"records": make_records(start, count, rank)}).encode())
    return bodies


def client_for(base_url: str, token: str, timeout: float = 300) -> httpx.Client:
    """An HTTP client with the bearer token and JSON content type."""
    return httpx.Client(base_url=base_url, timeout=timeout,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def create_run(client: httpx.Client, run_id: str) -> None:
    """PUT the run (idempotent)."""
    client.put(f"/api/v1/runs/{run_id}", json={"name": run_id, "project": "bench"}).raise_for_status()


def post_bodies(base_url: str, token: str, run_id: str, bodies: Sequence[bytes], threads: int = 1) -> float:
    """POST every body (``threads`` senders share the list); returns wall seconds."""
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def sender() -> None:
        with client_for(base_url, token) as client:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None or errors:
                    return
                try:
                    client.post(f"/api/v1/runs/{run_id}/diagnostics", content=bodies[index]).raise_for_status()
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append(exc)

    workers = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def stored_count(client: httpx.Client, run_id: str) -> int:
    """The run's record_count as the service reports it."""
    response = client.get(f"/api/v1/runs/{run_id}")
    response.raise_for_status()
    return int(response.json()["record_count"])
