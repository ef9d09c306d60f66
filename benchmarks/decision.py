"""(3) ``GET /escalation/decision`` latency while many runs ingest.

Load: generator processes (two by default, ``--load-processes``), one thread per run, each POSTing batches of
``decision_records_per_post`` records back to back ("flat out": the goal's scenario), and
once more paced at ``decision_paced_rate`` records/s per run, one POST per 0.5 s (a fast
trainer's steady stream through MonitorClient). The service runs with its default single worker and, flat out, also with
``--workers 2`` (one process per core). The probe -- a third process -- asks for a decision
round-robin over the runs, 5 ms apart, timing each request end to end. An idle probe
first gives the no-load baseline. Every posted record is checked to be stored. With
``--service-cpus`` (see ``benchmarks.placement``) the service is pinned to those CPUs and
every client process to the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Result, Row, goal_below, say
from benchmarks.load import READINGS8, client_for, create_run, stored_count
from benchmarks.placement import Placement, pinned_to
from benchmarks.service import LiveService, postgres_available, running_service, scratch_database
from benchmarks.sizes import Sizes
from monitor.settings import Settings

GOAL_P99_MS = 10.0
RAMP_SECONDS = 2.0
CLIENT_FLUSH_S = 0.5  # MonitorClient's default flush interval: a paced run posts this often


@dataclass(frozen=True)
class Scenario:
    """Database kind, service worker processes, and per-run ingest rate (None: flat out)."""

    kind: str
    workers: int
    rate: float | None = None

    @property
    def label(self) -> str:
        load = f"{self.rate:g} rec/s/run" if self.rate else "flat out"
        return f"{self.kind}, {self.workers}w, {load}"


def _spawn(role: str, svc: LiveService, runs: list[str], seconds: float, extra: list[str],
           placement: Placement, module: str = "benchmarks.decision_workers") -> subprocess.Popen:
    args = [sys.executable, "-m", module, role, "--url", svc.base_url, "--token",
            svc.token, "--runs", ",".join(runs), "--seconds", str(seconds), *extra]
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))  # keep a --target install
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, env=env,
                            preexec_fn=pinned_to(placement.client_cpus))


def _collect(process: subprocess.Popen, timeout: float) -> dict[str, Any]:
    out, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"decision worker exited {process.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


def _loaded_probe(svc: LiveService, runs: list[str], sizes: Sizes, rate: float | None,
                  placement: Placement) -> dict[str, Any]:
    """Start the load generators, probe while they run, then collect everything."""
    probe_s = sizes.decision_seconds
    per_post = max(1, int(rate * CLIENT_FLUSH_S)) if rate else sizes.decision_records_per_post
    extra = ["--per-post", str(per_post)] + (["--rate", str(rate)] if rate else [])
    start = time.monotonic()
    processes = placement.load_processes
    loaders = [_spawn("ingest", svc, runs[i::processes], probe_s + 2 * RAMP_SECONDS, extra, placement)
               for i in range(processes)]
    time.sleep(RAMP_SECONDS)
    loaded = _collect(_spawn("probe", svc, runs, probe_s, [], placement), probe_s + 120)
    loads = [_collect(p, probe_s + 300) for p in loaders]
    elapsed = time.monotonic() - start
    posted = sum(load["records"] for load in loads)
    return {"loaded": loaded, "records_posted": posted, "ingest_records_per_s": posted / elapsed,
            "load_errors": sum((load["errors"] for load in loads), [])}


def _wait_for_ingest_workers(svc: LiveService, runs: list[str], workers: int) -> None:
    """An empty POST per run and server process, each on a new connection (so they reach
    every process): each waits until its process's ingest worker has started, whose
    start-up (imports, on the service's cores) would otherwise fall into the idle probe."""
    for run in runs * workers:
        with client_for(svc.base_url, svc.token) as http:
            http.post(f"/api/v1/runs/{run}/diagnostics", content=b'{"records": []}').raise_for_status()


def measure(scenario: Scenario, sizes: Sizes, workdir: Path, placement: Placement = Placement()) -> dict[str, Any]:
    """Idle baseline, then the probe under load; checks every posted record was stored."""
    runs = [f"bench-decision-{i:02d}" for i in range(sizes.decision_runs)]
    with scratch_database(scenario.kind, workdir) as url, \
            running_service(url, workdir, scenario.workers, placement.service_cpus) as svc:
        with client_for(svc.base_url, svc.token) as http:
            for run in runs:
                create_run(http, run)
        _wait_for_ingest_workers(svc, runs, scenario.workers)
        say(f"decision [{scenario.label}]: idle probe, then {len(runs)} runs ingesting")
        idle = _collect(_spawn("probe", svc, runs, max(1.0, sizes.decision_seconds / 4), [], placement), 120)
        figures = _loaded_probe(svc, runs, sizes, scenario.rate, placement)
        with client_for(svc.base_url, svc.token) as http:
            stored = sum(stored_count(http, run) for run in runs)
        if figures["load_errors"]:  # the service's own account of what went wrong goes in the JSON
            figures["service_log_tail"] = svc.log_tail(6000)
    return {**figures, "idle": idle, "records_stored": stored, "runs": len(runs),
            "service_workers": scenario.workers, "rate_per_run": scenario.rate,
            "ingest_mode": Settings().ingest_mode, **placement.describe()}


def scenarios(sizes: Sizes) -> list[Scenario]:
    kinds = ["sqlite"] + (["postgres"] if postgres_available() else [])
    flat = [Scenario(kind, workers) for workers in sizes.decision_workers for kind in kinds]
    return flat + [Scenario(kind, 1, sizes.decision_paced_rate) for kind in kinds]


def _rows(label: str, figures: dict[str, Any]) -> list[Row]:
    rows = [Row(f"decision p50 ({label})", figures["loaded"]["p50_ms"], "ms")]
    p99 = figures["loaded"]["p99_ms"]
    rows.append(Row(f"decision p99 ({label})", p99, "ms", goal=f"< {GOAL_P99_MS:g} ms",
                    passed=goal_below(p99, GOAL_P99_MS)))
    rows.append(Row(f"decision p99 idle, before load ({label})", figures["idle"]["p99_ms"], "ms"))
    rows.append(Row(f"ingest during probe ({label})", figures["ingest_records_per_s"] * len(READINGS8),
                    "readings/s", better="higher"))
    return rows


def run(sizes: Sizes, workdir: Path, placement: Placement = Placement()) -> Result:
    chosen = scenarios(sizes)
    raw = {scenario.label: measure(scenario, sizes, workdir, placement) for scenario in chosen}
    where = f", service pinned to CPUs {sorted(placement.service_cpus)}" if placement.service_cpus else ""
    result = Result("decision", f"/escalation/decision latency, {sizes.decision_runs} runs ingesting (ms){where}",
                    raw=raw)
    for label, figures in raw.items():
        if figures["records_stored"] != figures["records_posted"] or figures["load_errors"]:
            result.notes.append(f"{label}: stored {figures['records_stored']} of {figures['records_posted']} "
                                f"posted; errors {figures['load_errors'][:2]}")
        result.rows += _rows(label, figures)
    if not any(s.kind == "postgres" for s in chosen):
        result.notes.append("PostgreSQL not reachable: its rows are missing")
    return result
