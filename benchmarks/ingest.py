"""(2) Ingestion throughput (readings stored per second) on SQLite and PostgreSQL vs MLflow ``log_batch``.

Ours: ``ingest_threads`` senders POST pre-encoded batches of ``ingest_per_request`` records
(8 readings each) to a real service; the clock stops when the last answer arrives, then
every record is verified through ``GET /api/v1/runs/{id}`` (record_count) and a read-back
of the first and last pages of ``GET /api/v1/runs/{id}/diagnostics``. MLflow: the same
number of sender threads calling ``MlflowClient.log_batch`` (1000 metrics per call, its
maximum) against ``mlflow server`` with its SQLite backend. Also records disk and RSS
before/after for the footprint benchmark. Both sides first send one untimed request per
sender thread (imports, connection pools, first pages), which the figures exclude.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import Result, Row, peers_python, run_peer, say
from benchmarks.footprint import database_bytes
from benchmarks.load import READINGS8, client_for, create_run, make_bodies, post_bodies, stored_count
from benchmarks.rss import tree_pss_bytes, tree_rss_bytes
from benchmarks.service import postgres_available, running_service, scratch_database
from benchmarks.sizes import Sizes

GOAL_RATIO = 10.0


def _read_back_ok(svc: Any, run_id: str, total: int) -> bool:
    """First and last 1000 records come back with the right steps."""
    with client_for(svc.base_url, svc.token) as http:
        for lo in (0, max(0, total - 1000)):
            hi = min(total, lo + 1000) - 1
            response = http.get(f"/api/v1/runs/{run_id}/diagnostics",
                                params={"step_min": lo, "step_max": hi, "limit": 1000})
            response.raise_for_status()
            if [r["step"] for r in response.json()["records"]] != list(range(lo, hi + 1)):
                return False
    return True


def measure_ours(kind: str, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """One database kind: throughput, verification, and before/after footprint."""
    per, total = sizes.ingest_per_request, sizes.ingest_records
    warmup = make_bodies(per * sizes.ingest_threads, per)  # untimed: imports, pools, first pages
    bodies = make_bodies(total, per, first=per * sizes.ingest_threads)
    run_id = f"bench-ingest-{kind}"
    with scratch_database(kind, workdir) as url, running_service(url, workdir) as svc:
        with client_for(svc.base_url, svc.token) as http:
            create_run(http, run_id)
        post_bodies(svc.base_url, svc.token, run_id, warmup, sizes.ingest_threads)
        pid = svc.process.pid
        rss_before, db_before = tree_rss_bytes(pid), database_bytes(url)
        say(f"ours/{kind}: {sizes.ingest_records} records in {len(bodies)} POSTs, {sizes.ingest_threads} threads")
        seconds = post_bodies(svc.base_url, svc.token, run_id, bodies, sizes.ingest_threads)
        rss_after, pss_after, db_after = tree_rss_bytes(pid), tree_pss_bytes(pid), database_bytes(url)
        with client_for(svc.base_url, svc.token) as http:
            stored = stored_count(http, run_id)
        expected = total + per * sizes.ingest_threads
        read_back = _read_back_ok(svc, run_id, expected)
    readings = total * len(READINGS8)
    return {"records": total, "readings": readings, "stored_records": stored, "expected_records": expected,
            "verified": stored == expected and read_back, "seconds": seconds,
            "readings_per_s": readings / seconds, "records_per_s": sizes.ingest_records / seconds,
            "rss_before": rss_before, "rss_after": rss_after, "pss_after": pss_after, "db_bytes_before": db_before,
            "db_bytes_after": db_after}


def measure_peer(sizes: Sizes) -> dict[str, Any] | None:
    """MLflow's figures, or None without the peers venv."""
    if peers_python() is None:
        return None
    say(f"peers: mlflow log_batch, {sizes.mlflow_ingest_readings} readings")
    return run_peer("mlflow_bench", ["ingest", "--readings", str(sizes.mlflow_ingest_readings),
                                     "--per-call", "1000", "--threads", str(sizes.ingest_threads)], timeout=1800)


def measure(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """Raw figures for ours (each database available) and MLflow."""
    kinds = ["sqlite"] + (["postgres"] if postgres_available() else [])
    raw: dict[str, Any] = {"ours": {kind: measure_ours(kind, sizes, workdir) for kind in kinds}, "peers": {}}
    peer = measure_peer(sizes)
    if peer is not None:
        raw["peers"]["mlflow"] = peer
    return raw


def run_from(raw: dict[str, Any]) -> Result:
    """Table rows from :func:`measure`'s figures."""
    result = Result("ingest", "Ingestion throughput (readings stored / s)", raw=raw)
    peer = raw["peers"].get("mlflow")
    if peer is None:
        result.notes.append("peers skipped: benchmarks/.venv-peers missing (run benchmarks/setup_peers.sh)")
    elif peer["stored"] != peer["readings"]:
        result.notes.append(f"mlflow stored {peer['stored']} of {peer['readings']} readings")
    if "postgres" not in raw["ours"]:
        result.notes.append("PostgreSQL not reachable: its row is missing")
    for kind, ours in raw["ours"].items():
        if not ours["verified"]:
            result.notes.append(f"ours/{kind}: stored {ours['stored_records']} of {ours['expected_records']} records")
        row = Row(f"ingest readings/s ({kind})", ours["readings_per_s"], "readings/s",
                  peer["readings_per_s"] if peer else None, "mlflow log_batch (sqlite)" if peer else None,
                  "higher", f">= {GOAL_RATIO:g}x peer")
        row.passed = None if row.ratio is None else (row.ratio >= GOAL_RATIO and ours["verified"])
        result.rows.append(row)
    return result


def run(sizes: Sizes, workdir: Path) -> Result:
    return run_from(measure(sizes, workdir))
