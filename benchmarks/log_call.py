"""(1) Trainer-side cost of one ``MonitorClient.log()`` call with 8 readings, vs MLflow and TensorBoard.

Ours: perf_counter_ns around each call while the client's background sender POSTs to a
real service (SQLite). Every ``log_chunk`` calls an untimed ``flush()`` keeps the queue
bounded so no call takes the cheap "queue full, dropped" path; we verify nothing was
dropped and every record was stored. Peers: MLflow ``log_metrics`` (sync and
``synchronous=False``) against a real ``mlflow server``, TensorBoard ``add_scalar`` x8.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Result, Row, goal_below, peers_python, run_peer, say
from benchmarks.load import client_for, stored_count
from benchmarks.service import running_service, scratch_database
from benchmarks.sizes import Sizes
from benchmarks.stats import summarise_ns, timer_overhead_ns

GOAL_P50_US = 5.0
GOAL_P99_US = 50.0


def _timed_calls(client: Any, first: int, count: int, rows: list[tuple[float, ...]]) -> list[int]:
    """The timed loop: keyword arguments spelled out, as a trainer writes them."""
    clock, log, samples = time.perf_counter_ns, client.log, []
    for step in range(first, first + count):
        a, b, c, d, e, f, g, h = rows[step & 1023]
        t0 = clock()
        log(step, step // 10_000, loss=a, accuracy=b, grad_norm=c, lora_norm_mean=d, lora_norm_max=e,
            stop_logit_var=f, attention_entropy=g, logit_max=h)
        samples.append(clock() - t0)
    return samples


def measure_ours(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """p50/p99 of log() with the sender running; checks zero drops and the stored count."""
    from trainer_client.client import MonitorClient

    rng = random.Random(0)
    rows = [tuple(rng.random() for _ in range(8)) for _ in range(1024)]
    with scratch_database("sqlite", workdir) as url, running_service(url, workdir) as svc:
        client = MonitorClient(svc.base_url, svc.token, "bench-log-call", run_name="log-call",
                               spill_dir=workdir / "spill")
        warm = min(10_000, sizes.log_calls)
        _timed_calls(client, 0, warm, rows)
        client.flush(timeout=300)
        say(f"ours: timing {sizes.log_calls} log() calls")
        samples: list[int] = []
        for first in range(warm, warm + sizes.log_calls, sizes.log_chunk):
            samples += _timed_calls(client, first, min(sizes.log_chunk, warm + sizes.log_calls - first), rows)
            client.flush(timeout=300)
        client.close()
        stats = client.stats()
        with client_for(svc.base_url, svc.token) as http:
            stored = stored_count(http, "bench-log-call")
    return {**summarise_ns(samples), "stored": stored, "expected": warm + sizes.log_calls,
            "dropped": stats["dropped"], "timer_overhead_ns": timer_overhead_ns()}


def measure_peers(sizes: Sizes) -> tuple[dict[str, Any], list[str]]:
    """MLflow and TensorBoard figures, or empty with a note when the peers venv is missing."""
    if peers_python() is None:
        return {}, ["peers skipped: benchmarks/.venv-peers missing (run benchmarks/setup_peers.sh)"]
    say("peers: tensorboard add_scalar x8")
    out = run_peer("tensorboard_bench", ["log-call", "--n", str(sizes.tensorboard_calls)], timeout=1800)
    say("peers: mlflow log_metrics (sync, async) against mlflow server")
    out.update(run_peer("mlflow_bench", ["log-call", "--sync-n", str(sizes.mlflow_sync_calls),
                                         "--async-n", str(sizes.mlflow_async_calls)], timeout=1800))
    return out, []


def run(sizes: Sizes, workdir: Path) -> Result:
    ours = measure_ours(sizes, workdir)
    peers, notes = measure_peers(sizes)
    result = Result("log_call", "Trainer-side log() call, 8 readings (us)", raw={"ours": ours, "peers": peers},
                    notes=notes)
    if ours["dropped"] or ours["stored"] != ours["expected"]:
        result.notes.append(f"ours stored {ours['stored']}/{ours['expected']}, dropped {ours['dropped']}")
    for q, goal in (("p50", GOAL_P50_US), ("p99", GOAL_P99_US)):
        value = ours[f"{q}_us"]
        names = [p for p in ("mlflow_sync", "mlflow_async", "tensorboard") if p in peers] or [None]
        for name in names:
            peer = peers[name][f"{q}_us"] if name else None
            result.rows.append(Row(f"log() {q}", value, "us", peer, name, "lower", f"< {goal:g} us",
                                   goal_below(value, goal)))
    return result
