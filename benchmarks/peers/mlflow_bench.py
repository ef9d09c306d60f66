"""MLflow side: ``log_metrics`` call cost (sync and async) and ``log_batch`` ingestion throughput.

Runs in the peers venv against a real ``mlflow server`` with its SQLite backend;
prints one JSON object on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.peers.mlflow_server import mlflow_server
from benchmarks.rss import tree_pss_bytes, tree_rss_bytes
from benchmarks.stats import summarise_ns

KEYS = ("loss", "accuracy", "grad_norm", "lora_norm_mean", "lora_norm_max", "stop_logit_var",
        "attention_entropy", "logit_max")


def _say(message: str) -> None:
    print(f"[mlflow] {message}", file=sys.stderr, flush=True)


def _metrics_at(step: int, rng: random.Random) -> dict[str, float]:
    return {key: rng.random() + index for index, key in enumerate(KEYS)}


def _time_calls(n: int, warmup: int, call: Any) -> list[int]:
    """perf_counter_ns around each of ``n`` calls of ``call(step)`` after ``warmup`` untimed ones."""
    for step in range(warmup):
        call(step)
    clock, samples = time.perf_counter_ns, []
    for step in range(warmup, warmup + n):
        t0 = clock()
        call(step)
        samples.append(clock() - t0)
    return samples


def log_call(url: str, sync_n: int, async_n: int) -> dict[str, Any]:
    """Fluent ``mlflow.log_metrics`` with 8 metrics per call, synchronous and ``synchronous=False``."""
    import mlflow

    mlflow.set_tracking_uri(url)
    rng = random.Random(0)
    out: dict[str, Any] = {"mlflow_version": mlflow.__version__}
    for label, n, sync in (("mlflow_sync", sync_n, True), ("mlflow_async", async_n, False)):
        values = [_metrics_at(s, rng) for s in range(n + 100)]
        with mlflow.start_run(run_name=label) as run:
            _say(f"log_metrics {label}: {n} calls")
            samples = _time_calls(n, 100, lambda s: mlflow.log_metrics(values[s], step=s, synchronous=sync))
            start = time.perf_counter()
            mlflow.flush_async_logging()
            drain = time.perf_counter() - start
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, KEYS[0])
        out[label] = {**summarise_ns(samples), "stored_steps": len(history), "drain_s": drain}
    return out


def _metric_batches(readings: int, per_call: int) -> list[list[Any]]:
    """Pre-built ``Metric`` lists of ``per_call`` entries (8 per step), so timing sees only log_batch."""
    from mlflow.entities import Metric

    rng, now = random.Random(1), int(time.time() * 1000)
    flat = [Metric(key, value, now + step, step)
            for step in range(readings // len(KEYS)) for key, value in _metrics_at(step, rng).items()]
    return [flat[i:i + per_call] for i in range(0, len(flat), per_call)]


def ingest(url: str, db: Path, pid: int, readings: int, per_call: int, threads: int) -> dict[str, Any]:
    """``MlflowClient.log_batch`` from ``threads`` senders; verifies every reading is stored."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    run_id = client.create_run(client.create_experiment("ingest")).info.run_id
    warm_calls = 2 * max(threads, 4)  # untimed, like ours: reach every default worker (4) at least once
    batches = _metric_batches(readings + per_call * warm_calls, per_call)
    warmup, batches = batches[:warm_calls], batches[warm_calls:]
    _send_all(client, run_id, warmup, threads)
    rss_before, db_before = tree_rss_bytes(pid), _sqlite_bytes(db)
    sent = sum(map(len, batches))
    _say(f"log_batch: {sent} readings in {len(batches)} calls, {threads} thread(s)")
    seconds = _send_all(client, run_id, batches, threads)
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)).fetchone()[0]
    stored -= sum(map(len, warmup))
    memory = {"rss_before": rss_before, "rss_after": tree_rss_bytes(pid), "pss_after": tree_pss_bytes(pid)}
    return {"readings": sent, "stored": stored, "seconds": seconds, "readings_per_s": sent / seconds, **memory,
            "db_bytes_before": db_before, "db_bytes_after": _sqlite_bytes(db),
            "history_len_one_key": len(client.get_metric_history(run_id, KEYS[0]))}


def _send_all(client: Any, run_id: str, batches: list[list[Any]], threads: int) -> float:
    """``threads`` senders share the batches; returns wall seconds."""
    cursor, lock = iter(batches), threading.Lock()

    def sender() -> None:
        while True:
            with lock:
                batch = next(cursor, None)
            if batch is None:
                return
            client.log_batch(run_id, metrics=batch, synchronous=True)

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def _sqlite_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["log-call", "ingest"])
    parser.add_argument("--sync-n", type=int, default=1000)
    parser.add_argument("--async-n", type=int, default=20_000)
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--per-call", type=int, default=1000, help="metrics per log_batch (MLflow's max is 1000)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="mlflow server --workers (default: MLflow's)")
    args = parser.parse_args()
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # MLflow prints "View run ..." lines on stdout
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp, mlflow_server(Path(tmp), args.workers) as srv:
        _say(f"server at {srv['url']}")
        if args.what == "log-call":
            result = log_call(srv["url"], args.sync_n, args.async_n)
        else:
            result = ingest(srv["url"], srv["db"], srv["pid"], args.readings, args.per_call, args.threads)
    sys.stdout = real_stdout
    print(json.dumps(result))


if __name__ == "__main__":
    main()
