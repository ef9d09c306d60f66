"""(4) Chart data for a 1,000,000-batch run: time to serve ``GET /api/v1/runs/{id}/series``.

The run is loaded through the bulk ingestion API (``series_per_request`` records per POST),
so whatever the service maintains at ingestion (series rollups) is maintained exactly as
in production; the load rate is reported too. Then each query shape is timed end to end
from a client ``series_queries`` times (fewer if ``series_query_budget_s`` runs out): the
whole run, a 50k-step zoom and a 5k-step zoom (at random offsets); 4 metrics, max_points=2000.
No peer: loading 8M readings into MLflow at its measured ``log_batch`` rate would take hours.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Result, Row, goal_below, say
from benchmarks.footprint import database_bytes
from benchmarks.load import READINGS8, client_for, create_run, make_records, stored_count
from benchmarks.rss import tree_pss_bytes, tree_rss_bytes
from benchmarks.service import LiveService, running_service, scratch_database
from benchmarks.sizes import Sizes
from benchmarks.stats import summarise_ns

GOAL_MS = 200.0
METRICS = "loss,accuracy,grad_norm,lora_norm_max"
RUN_ID = "bench-series-1m"


def load_run(svc: LiveService, total: int, per_request: int) -> float:
    """POST ``total`` records in bulk requests (bodies built as we go); returns seconds."""
    with client_for(svc.base_url, svc.token, timeout=600) as http:
        create_run(http, RUN_ID)
        start = time.perf_counter()
        for first in range(0, total, per_request):
            body = json.dumps({"records": make_records(first, min(per_request, total - first))}).encode()
            http.post(f"/api/v1/runs/{RUN_ID}/diagnostics", content=body).raise_for_status()
            if (first // per_request) % 10 == 9:
                say(f"series: loaded {first + per_request:,} records")
        return time.perf_counter() - start


def time_queries(svc: LiveService, total: int, span: int | None, count: int, budget_s: float) -> dict[str, Any]:
    """Up to ``count`` series requests over windows of ``span`` steps (None: whole run), within ``budget_s``."""
    rng = random.Random(span or 0)
    samples, sources, points = [], set(), 0
    deadline = time.monotonic() + budget_s
    with client_for(svc.base_url, svc.token) as http:
        for index in range(count + 1):  # the first one warms caches and is not counted
            if index > 3 and time.monotonic() > deadline:
                break
            params: dict[str, Any] = {"metrics": METRICS, "max_points": 2000}
            if span is not None:
                params["step_min"] = rng.randrange(0, max(1, total - span))
                params["step_max"] = params["step_min"] + span - 1
            t0 = time.perf_counter_ns()
            response = http.get(f"/api/v1/runs/{RUN_ID}/series", params=params)
            samples.append(time.perf_counter_ns() - t0)
            response.raise_for_status()
            series = response.json()["series"]
            sources |= {s.get("source") for s in series.values()}
            points = max(points, max(len(s["steps"]) for s in series.values()))
    return {**summarise_ns(samples[1:], "ms"), "sources": sorted(map(str, sources)), "max_points_returned": points}


def rebuild_rollups(url: str) -> float:
    """The dashboard helper's maintenance (``monitor.store.rollups.rebuild_rollups``) run directly
    on the database, for when ingestion did not maintain rollups; returns seconds."""
    from monitor.store.database import Database
    from monitor.store.rollups import rebuild_rollups as rebuild

    db = Database(url, 1)
    try:
        start = time.perf_counter()
        with db.write_session() as session:
            rebuild(session, RUN_ID)
        return time.perf_counter() - start
    finally:
        db.dispose()


def time_shapes(svc: LiveService, sizes: Sizes) -> dict[str, dict[str, Any]]:
    """Every query shape, timed."""
    total = sizes.series_records
    shapes = {"whole run": None, "50k-step zoom": 50_000, "5k-step zoom": 5_000}
    return {name: time_queries(svc, total, span if span is None or span < total else None,
                               sizes.series_queries, sizes.series_query_budget_s)
            for name, span in shapes.items()}


def measure(sizes: Sizes, workdir: Path, kind: str = "sqlite") -> dict[str, Any]:
    """Load the run, verify it, time the query shapes; also disk and memory right after the load."""
    total = sizes.series_records
    with scratch_database(kind, workdir) as url, running_service(url, workdir) as svc:
        rss_before, db_before = tree_rss_bytes(svc.process.pid), database_bytes(url)
        say(f"series/{kind}: loading {total:,} records, {sizes.series_per_request:,} per request")
        seconds = load_run(svc, total, sizes.series_per_request)
        pid = svc.process.pid
        footprint = {"rss_before": rss_before, "rss_after": tree_rss_bytes(pid), "pss_after": tree_pss_bytes(pid),
                     "db_bytes_before": db_before, "db_bytes_after": database_bytes(url)}
        with client_for(svc.base_url, svc.token) as http:
            stored = stored_count(http, RUN_ID)
        say(f"series/{kind}: timing queries")
        queries, rebuilt = time_shapes(svc, sizes), None
        if queries["whole run"]["sources"] == ["raw"]:
            say(f"series/{kind}: ingestion kept no rollups; running rebuild_rollups, then timing again")
            rebuilt = {"rebuild_seconds": rebuild_rollups(url), "queries": time_shapes(svc, sizes)}
    return {"kind": kind, "records": total, "stored": stored, "load_seconds": seconds,
            "load_readings_per_s": total * len(READINGS8) / seconds, "queries": queries,
            "after_rebuild": rebuilt, "footprint": footprint}


def run(sizes: Sizes, workdir: Path) -> Result:
    raw = measure(sizes, workdir)
    result = Result("series", f"Chart series of a {sizes.series_records:,}-batch run, max_points=2000 (ms)", raw=raw)
    if raw["stored"] != raw["records"]:
        result.notes.append(f"stored {raw['stored']} of {raw['records']} records")
    sets = [(raw["kind"], raw["queries"])]
    if raw["after_rebuild"]:
        sets.append((f"{raw['kind']}, after rebuild_rollups", raw["after_rebuild"]["queries"]))
        result.notes.append(f"ingestion did not maintain series rollups at this commit (queries read raw rows); "
                            f"rebuild_rollups took {raw['after_rebuild']['rebuild_seconds']:.1f}s, then re-timed")
    for label, queries in sets:
        for name, figures in queries.items():
            for q in ("p50", "p99"):
                value = figures[f"{q}_ms"]
                result.rows.append(Row(f"series {name} {q} ({label})", value, "ms", goal=f"< {GOAL_MS:g} ms",
                                       passed=goal_below(value, GOAL_MS)))
        result.notes.append(f"sources read ({label}): " + "; ".join(
            f"{n}: {', '.join(f['sources'])}" for n, f in queries.items()))
    result.rows.append(Row(f"bulk load ({raw['kind']})", raw["load_readings_per_s"], "readings/s", better="higher"))
    result.notes.append("no peer: loading 8M readings into MLflow at its measured log_batch rate would take hours")
    return result
