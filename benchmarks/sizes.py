"""How big each benchmark runs: ``FULL`` (the README's figures, < ~10 min) and ``SMOKE`` (seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Every knob of the suite in one place, so a run's JSON records exactly what was measured."""

    log_calls: int  # our log() calls timed
    log_chunk: int  # calls between untimed flush()es (keeps the queue bounded, no drops)
    mlflow_sync_calls: int  # each one is an HTTP round trip: far fewer
    mlflow_async_calls: int
    tensorboard_calls: int
    ingest_records: int  # per database, 8 readings each
    ingest_per_request: int
    ingest_threads: int
    mlflow_ingest_readings: int
    decision_runs: int
    decision_seconds: float
    decision_records_per_post: int
    decision_workers: tuple[int, ...]  # service worker processes to try, flat out
    decision_paced_rate: float  # records/s per run in the paced scenario
    series_records: int
    series_per_request: int
    series_queries: int  # per query shape...
    series_query_budget_s: float  # ...or fewer when this time is up (at least 3)
    gpu_steps: int
    gpu_rounds: int
    heavy_records: int = 50_000  # batches of the run the heavy reads ask for
    heavy_extras: int = 32  # extra readings per batch, all asked for by each heavy read
    heavy_readers: int = 8  # concurrent heavy-read clients
    heavy_seconds: float = 10.0  # decision probe, alone and under the heavy reads


FULL = Sizes(
    log_calls=200_000, log_chunk=5_000, mlflow_sync_calls=300, mlflow_async_calls=1_000,
    tensorboard_calls=30_000, ingest_records=200_000, ingest_per_request=1_000, ingest_threads=2,
    mlflow_ingest_readings=40_000, decision_runs=16, decision_seconds=12, decision_records_per_post=500,
    decision_workers=(1, 2), decision_paced_rate=100, series_records=1_000_000, series_per_request=20_000,
    series_queries=30, series_query_budget_s=60, gpu_steps=50, gpu_rounds=5,
)

SMOKE = Sizes(
    log_calls=2_000, log_chunk=500, mlflow_sync_calls=10, mlflow_async_calls=50,
    tensorboard_calls=500, ingest_records=4_000, ingest_per_request=1_000, ingest_threads=2,
    mlflow_ingest_readings=2_000, decision_runs=4, decision_seconds=2, decision_records_per_post=100,
    decision_workers=(1,), decision_paced_rate=100, series_records=20_000, series_per_request=5_000,
    series_queries=3, series_query_budget_s=10, gpu_steps=2, gpu_rounds=1,
    heavy_records=2_000, heavy_extras=4, heavy_readers=2, heavy_seconds=1.0,
)
