"""(16.6) ``GET /escalation/decision`` latency alone vs while heavy series reads run, same service.

A run of ``heavy_records`` batches, each with ``heavy_extras`` extra readings (the most
one request may ask for, ``MONITOR_SERIES_MAX_METRICS``), is loaded through the API. Then,
per service configuration: the decision probe (``benchmarks.decision_workers probe``, its
own process) runs alone, then again while ``heavy_readers`` client threads (another process)
ask back to back for every extra of the whole run. The ratio of the two p99s is the figure.
Configurations: the default read slots (``MONITOR_READ_CONCURRENCY`` = 2) and, for contrast,
64 slots (as good as unbounded: what the service did before issue 16.6).

    python -m benchmarks.heavy_read readers --url U --token T --run R --metrics a,b --threads N --seconds S
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Result, Row, goal_below, say
from benchmarks.decision import _collect, _spawn
from benchmarks.load import READINGS8, client_for, create_run, readings_at
from benchmarks.placement import Placement
from benchmarks.service import running_service, scratch_database
from benchmarks.sizes import Sizes

RUN_ID = "bench-heavy-read"
RAMP_SECONDS = 1.0
GOAL_P99_MS = 10.0
CONFIGS = {"2 read slots (default)": "2", "64 read slots (unbounded, as before)": "64"}


def extras(count: int) -> list[str]:
    return [f"x{i:02d}" for i in range(count)]


def load_run(base_url: str, token: str, total: int, names: list[str], per_post: int = 2_000) -> None:
    """``total`` batches, each with the 8 usual readings plus one value per extra name."""
    rng = random.Random(0)
    with client_for(base_url, token, timeout=600) as http:
        create_run(http, RUN_ID)
        for first in range(0, total, per_post):
            records = [{"step": s, "epoch": 0, **readings_at(s, rng),
                        "extra": {name: rng.random() for name in names}}
                       for s in range(first, min(total, first + per_post))]
            http.post(f"/api/v1/runs/{RUN_ID}/diagnostics", json={"records": records}).raise_for_status()


def readers(url: str, token: str, run: str, metrics: str, threads: int, seconds: float) -> dict[str, Any]:
    """``threads`` clients asking for the series back to back until the deadline; answers by status."""
    deadline = time.monotonic() + seconds
    statuses: dict[str, int] = {}
    durations: list[float] = []
    lock = threading.Lock()

    def reader() -> None:
        with client_for(url, token) as http:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                code = http.get(f"/api/v1/runs/{run}/series", params={"metrics": metrics}).status_code
                with lock:
                    statuses[str(code)] = statuses.get(str(code), 0) + 1
                    durations.append(time.perf_counter() - t0)

    workers = [threading.Thread(target=reader, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    durations.sort()
    return {"statuses": statuses, "reads": len(durations),
            "read_p50_s": durations[len(durations) // 2] if durations else None}


def _readers_process(svc: Any, metrics: str, threads: int, seconds: float, placement: Placement) -> Any:
    args = ["--run", RUN_ID, "--metrics", metrics, "--threads", str(threads)]
    return _spawn("readers", svc, [RUN_ID], seconds, args, placement, module="benchmarks.heavy_read")


def measure_config(url: str, workdir: Path, slots: str, sizes: Sizes, metrics: str,
                   placement: Placement) -> dict[str, Any]:
    """One service start: the probe alone, then the probe while the heavy readers run."""
    env = {"MONITOR_READ_CONCURRENCY": slots, "MONITOR_SERIES_MAX_METRICS": str(max(32, sizes.heavy_extras))}
    with running_service(url, workdir, env=env) as svc:
        probe_s = sizes.heavy_seconds
        alone = _collect(_spawn("probe", svc, [RUN_ID], probe_s, [], placement), probe_s + 120)
        loaders = _readers_process(svc, metrics, sizes.heavy_readers, probe_s + 2 * RAMP_SECONDS, placement)
        time.sleep(RAMP_SECONDS)
        loaded = _collect(_spawn("probe", svc, [RUN_ID], probe_s, [], placement), probe_s + 120)
        reads = _collect(loaders, probe_s + 600)
    return {"alone": alone, "loaded": loaded, "reads": reads, "read_concurrency": int(slots),
            "p99_ratio": loaded["p99_ms"] / alone["p99_ms"], "p50_ratio": loaded["p50_ms"] / alone["p50_ms"]}


def run(sizes: Sizes, workdir: Path, placement: Placement = Placement()) -> Result:
    names = extras(sizes.heavy_extras)
    metrics = ",".join(f"extra.{name}" for name in names)
    raw: dict[str, Any] = {"records": sizes.heavy_records, "extras": len(names), "readers": sizes.heavy_readers,
                           "seconds": sizes.heavy_seconds}
    with scratch_database("sqlite", workdir) as url:
        with running_service(url, workdir) as svc:
            say(f"heavy_read: loading {sizes.heavy_records:,} batches with {len(names)} extras each")
            load_run(svc.base_url, svc.token, sizes.heavy_records, names)
        for label, slots in CONFIGS.items():
            say(f"heavy_read [{label}]: probe alone, then with {sizes.heavy_readers} heavy readers")
            raw[label] = measure_config(url, workdir, slots, sizes, metrics, placement)
    title = (f"Decision poll alone vs {sizes.heavy_readers} series reads of {len(names)} extras over "
             f"{sizes.heavy_records:,} batches (SQLite, ms)")
    result = Result("heavy_read", title, raw=raw)
    for label in CONFIGS:
        figures = raw[label]
        result.rows += [
            Row(f"decision p50 with heavy reads ({label})", figures["loaded"]["p50_ms"], "ms"),
            Row(f"decision p50 alone ({label})", figures["alone"]["p50_ms"], "ms"),
            Row(f"decision p99 with heavy reads ({label})", figures["loaded"]["p99_ms"], "ms",
                goal=f"< {GOAL_P99_MS:g} ms", passed=goal_below(figures["loaded"]["p99_ms"], GOAL_P99_MS)),
            Row(f"decision p99 alone ({label})", figures["alone"]["p99_ms"], "ms"),
            Row(f"decision p99 ratio, with / alone ({label})", figures["p99_ratio"], "x"),
        ]
        result.notes.append(f"{label}: series answers {figures['reads']['statuses']}, "
                            f"read p50 {figures['reads']['read_p50_s']} s")
    result.notes.append(f"readings per batch: {len(READINGS8)} + {len(names)} extras")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="heavy series readers (a process of their own)")
    parser.add_argument("role", choices=["readers"])
    for name in ("--url", "--token", "--run", "--metrics"):
        parser.add_argument(name, required=True)
    parser.add_argument("--runs", default="")  # passed by ``decision._spawn``; the run is ``--run``
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    print(json.dumps(readers(args.url, args.token, args.run, args.metrics, args.threads, args.seconds)))


if __name__ == "__main__":
    main()
