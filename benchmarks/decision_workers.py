"""Processes for the decision-latency benchmark: ``ingest`` (load generator) and ``probe`` (the timed client).

    python -m benchmarks.decision_workers ingest --url U --token T --runs a,b --seconds S --per-post N
    python -m benchmarks.decision_workers probe  --url U --token T --runs a,b --seconds S

Separate processes so the probe's timer never waits on the load generators' GIL.
Each prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
import zlib
from typing import Any

from benchmarks.load import client_for, make_bodies
from benchmarks.stats import summarise_ns


def ingest(url: str, token: str, runs: list[str], seconds: float, per_post: int,
           rate: float | None = None) -> dict[str, Any]:
    """One thread per run POSTs consecutive batches until the deadline: as fast as the service
    answers, or paced at ``rate`` records per second per run (a trainer's steady stream)."""
    start = time.monotonic()
    deadline = start + seconds
    posted = {run: 0 for run in runs}
    errors: list[str] = []

    def sender(run: str, phase: float) -> None:
        with client_for(url, token) as http:
            step = 0
            while time.monotonic() < deadline:
                if rate:
                    time.sleep(max(0.0, start + phase + step / rate - time.monotonic()))
                body = make_bodies(per_post, per_post, first=step)[0]
                response = http.post(f"/api/v1/runs/{run}/diagnostics", content=body)
                if response.status_code != 200:
                    errors.append(f"{run}: {response.status_code} {response.text[:200]}")
                    return
                step += per_post
                posted[run] = step

    period = per_post / rate if rate else 0.0  # paced runs are spread over the period, as real trainers are
    threads = [threading.Thread(target=sender, args=(run, period * (zlib.crc32(run.encode()) % 1000) / 1000),
                                daemon=True) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"posted": posted, "records": sum(posted.values()), "errors": errors[:5]}


def probe(url: str, token: str, runs: list[str], seconds: float, pause: float) -> dict[str, Any]:
    """GET /escalation/decision round-robin over the runs, timing each request end to end."""
    deadline = time.monotonic() + seconds
    clock, samples, failures = time.perf_counter_ns, [], 0
    with client_for(url, token) as http:
        for run in itertools.cycle(runs):
            if time.monotonic() >= deadline:
                break
            t0 = clock()
            response = http.get("/escalation/decision", params={"run_id": run})
            samples.append(clock() - t0)
            failures += response.status_code != 200
            time.sleep(pause)
    return {**summarise_ns(samples, "ms"), "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["ingest", "probe"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--runs", required=True, help="comma-separated run ids")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--per-post", type=int, default=500)
    parser.add_argument("--rate", type=float, default=None, help="ingest: records/s per run (default: flat out)")
    parser.add_argument("--pause", type=float, default=0.005, help="probe: sleep between requests")
    args = parser.parse_args()
    runs = args.runs.split(",")
    if args.role == "ingest":
        out = ingest(args.url, args.token, runs, args.seconds, args.per_post, args.rate)
    else:
        out = probe(args.url, args.token, runs, args.seconds, args.pause)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
