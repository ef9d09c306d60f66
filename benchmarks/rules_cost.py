"""(7) What rules as data cost: ingestion with the shipped rules against the engine before it, 100 rules, 256 ranks.

In the same run, on the same machine and database kind:

* **engine**: readings/s through ``RuleEngine.evaluate_batch`` alone, ours (shipped rules and
  100 rules) and the engine before issue 17 (commit ``BASELINE``, checked out with
  ``git worktree add`` into a temp dir and run in a subprocess with PYTHONPATH there);
* **ingest**: readings stored per second through the real service (SQLite), ours against
  that baseline's service, in alternating rounds; the goal is judged on the median of the
  per-round ratios (each round's services run back to back, so host drift cancels);
* **256 ranks**: one run, 256 ranks at 10 records/s each (2,560 records/s) through our
  service, paced by a separate load process (16 senders of 16 ranks, one POST a second
  each), while a probe process times ``GET /escalation/decision``: the ingest rate held and
  the decision p50/p99.

    python -m benchmarks.rules_cost load --url U --token T --run R --ranks 256 --rate 10 --seconds S
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Result, Row, goal_below, say
from benchmarks.load import READINGS8, client_for, make_bodies, make_records, post_bodies, stored_count
from benchmarks.service import LiveService, running_service, scratch_database
from benchmarks.sizes import Sizes

BASELINE = "903d87f"
GOAL_RATIO = 0.90  # shipped rules keep >= 90 % of the old engine's ingest readings/s


def hundred_rules_config() -> dict[str, Any]:
    """The shipped 13 rules plus 88 more over the benchmark's readings (bounds, EMA, rolling, growth, spike)."""
    shapes = [
        lambda r, i: {"reading": r, "above": 1e6 + i},
        lambda r, i: {"reading": r, "below": -1e6 - i, "for": 5},
        lambda r, i: {"reading": r, "reduce": {"ema": 0.9}, "above": 1e6 + i},
        lambda r, i: {"reading": r, "reduce": {"rolling_mean": 16}, "outside": [-1e6, 1e6 + i]},
        lambda r, i: {"reading": r, "reduce": "epoch_mean", "growth": {"ratio": 5.0 + i, "window_epochs": 3}},
        lambda r, i: {"reading": r, "spike": {"sigma": 50 + i, "window": 64}},
        lambda r, i: {"reading": f"{r} / grad_norm", "above": 1e6 + i},
        lambda r, i: {"any": [{"reading": r, "above": 1e6 + i}, {"reading": "loss", "below": -1e6}]},
    ]
    rules = [{"name": f"extra_rule_{i}", "severity": "warning",
              **shapes[i % len(shapes)](READINGS8[i % len(READINGS8)], i)} for i in range(88)]
    return {"monitor": {"rules": rules}}


ENGINE_SCRIPT = r"""
import json, sys, time, random
config = json.loads(sys.argv[2])
from monitor.rules import BatchReading, RuleEngine
try:
    from monitor.rules import RuleSet
    engine = RuleEngine(RuleSet.from_run_config(config))
    kwargs = {}  # the service passes now= with a rank's last record of a request only
except ImportError:  # the engine before issue 17
    from monitor.rules import Thresholds
    engine = RuleEngine(Thresholds.from_run_config(config))
    kwargs = {}
from benchmarks.load import make_records
n = int(sys.argv[1])
readings = [BatchReading(**r) for r in make_records(0, n)]
best = 0.0
for _ in range(3):
    states = {}
    t0 = time.perf_counter()
    for reading in readings:
        engine.evaluate_batch(states, reading, **kwargs)
    best = max(best, n / (time.perf_counter() - t0))
print(json.dumps({"evaluations_per_s": best, "rules": len(engine.batch_rules)}))
"""


@contextmanager
def baseline_tree(workdir: Path) -> Iterator[Path | None]:
    """The pre-issue-17 tree as a detached worktree (None when git cannot make one)."""
    target = workdir / f"baseline-{BASELINE}"
    made = subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(target), BASELINE],
                          capture_output=True, text=True)
    if made.returncode != 0:
        say(f"baseline worktree unavailable: {made.stderr.strip()[:200]}")
        yield None
        return
    try:
        yield target
    finally:
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(target)],
                       capture_output=True)


def engine_rate(tree: Path, config: dict[str, Any], readings: int) -> dict[str, Any]:
    """Readings/s through one tree's evaluate_batch, in its own interpreter."""
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{REPO_ROOT}"}
    done = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, str(readings), json.dumps(config)], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout)


class TreeService(LiveService):
    """A service started from another tree (the baseline), with its own migrations and code."""

    def __init__(self, tree: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tree = tree

    def start(self, timeout: float = 120) -> TreeService:
        env = {**os.environ, "MONITOR_API_TOKEN": self.token, "MONITOR_PUBLIC_URL": self.base_url,
               "PYTHONPATH": str(self.tree), "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--database-url", self.database_url, "--workers", "1"],
            cwd=self.tree, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        return self


@contextmanager
def service_of(tree: Path | None, url: str, workdir: Path) -> Iterator[LiveService]:
    if tree is None:
        with running_service(url, workdir) as svc:
            yield svc
        return
    svc = TreeService(tree, url, "bench-baseline-token", workdir / "baseline-service.log").start()
    try:
        yield svc
    finally:
        svc.close()


def ingest_rate(tree: Path | None, workdir: Path, records: int, config: dict[str, Any]) -> float:
    """Readings stored per second by one service (ours when ``tree`` is None), SQLite, 2 senders."""
    per = 1000
    with scratch_database("sqlite", workdir) as url, service_of(tree, url, workdir) as svc:
        with client_for(svc.base_url, svc.token) as http:
            http.put("/api/v1/runs/r", json={"name": "r", "config": config}).raise_for_status()
        post_bodies(svc.base_url, svc.token, "r", make_bodies(2 * per, per), 2)  # untimed warm-up
        seconds = post_bodies(svc.base_url, svc.token, "r", make_bodies(records, per, first=2 * per), 2)
        with client_for(svc.base_url, svc.token) as http:
            assert stored_count(http, "r") == records + 2 * per
    return records * len(READINGS8) / seconds


def paced_load(url: str, token: str, run: str, ranks: int, rate: float, seconds: float,
               group: int = 16) -> dict[str, Any]:
    """``ranks`` ranks at ``rate`` records/s each: one sender per ``group`` ranks, one POST a second."""
    start = time.monotonic()
    posted, late, errors = [0], [0.0], []
    lock = threading.Lock()

    def sender(first_rank: int) -> None:
        with client_for(url, token) as http:
            tick = 0
            while tick < seconds:
                due = start + tick + (first_rank / ranks)
                time.sleep(max(0.0, due - time.monotonic()))
                records = [r for rank in range(first_rank, min(first_rank + group, ranks))
                           for r in make_records(int(tick * rate), int(rate), rank)]
                response = http.post(f"/api/v1/runs/{run}/diagnostics", json={"records": records})
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return
                with lock:
                    posted[0] += len(records)
                    late[0] = max(late[0], time.monotonic() - due)
                tick += 1

    threads = [threading.Thread(target=sender, args=(first,), daemon=True) for first in range(0, ranks, group)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    # Held rate: what was posted over the schedule's span; a service that falls behind makes the
    # posts late (max_post_late_s grows) and the span longer than ``seconds``.
    span = max(elapsed, seconds)
    return {"records": posted[0], "seconds": elapsed, "records_per_s": posted[0] / span,
            "max_post_late_s": late[0], "errors": errors[:5]}


def ranks_run(workdir: Path, ranks: int, rate: float, seconds: float) -> dict[str, Any]:
    """256 ranks through our service while a probe process times the decision."""
    with scratch_database("sqlite", workdir) as url, running_service(url, workdir) as svc:
        with client_for(svc.base_url, svc.token) as http:
            http.put("/api/v1/runs/ranks", json={"name": "ranks"}).raise_for_status()
        common = ["--url", svc.base_url, "--token", svc.token]
        load = subprocess.Popen([sys.executable, "-m", "benchmarks.rules_cost", "load", *common, "--run", "ranks",
                                 "--ranks", str(ranks), "--rate", str(rate), "--seconds", str(seconds)],
                                cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        probe = subprocess.Popen([sys.executable, "-m", "benchmarks.decision_workers", "probe", *common,
                                  "--runs", "ranks", "--seconds", str(seconds), "--pause", "0.02"],
                                 cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        loaded = json.loads(load.communicate(timeout=seconds * 4 + 120)[0])
        probed = json.loads(probe.communicate(timeout=seconds * 4 + 120)[0])
        with client_for(svc.base_url, svc.token) as http:
            stored = stored_count(http, "ranks")
    return {"load": loaded, "decision_ms": probed, "stored": stored, "offered_per_s": ranks * rate}


def measure(workdir: Path, smoke: bool) -> dict[str, Any]:
    readings, records, rounds = (2_000, 4_000, 1) if smoke else (30_000, 60_000, 4)
    ranks, seconds = (16, 3.0) if smoke else (256, 30.0)
    hundred = hundred_rules_config()
    out: dict[str, Any] = {"baseline_commit": BASELINE, "rounds": rounds}
    with baseline_tree(workdir) as tree:
        out["engine"] = {"ours_shipped": engine_rate(REPO_ROOT, {}, readings),
                         "ours_100_rules": engine_rate(REPO_ROOT, hundred, readings)}
        ingest: dict[str, list[float]] = {"ours_shipped": [], "ours_100_rules": [], "baseline": []}
        if tree is not None:
            out["engine"]["baseline"] = engine_rate(tree, {}, readings)
        for index in range(rounds):
            say(f"rules_cost ingest round {index + 1}/{rounds}")
            if tree is not None:
                ingest["baseline"].append(ingest_rate(tree, workdir, records, {}))
            ingest["ours_shipped"].append(ingest_rate(None, workdir, records, {}))
            ingest["ours_100_rules"].append(ingest_rate(None, workdir, records, hundred))
        out["ingest_readings_per_s"] = ingest
    say(f"rules_cost: {ranks} ranks at 10 records/s for {seconds:.0f}s")
    out["ranks"] = ranks_run(workdir, ranks, 10.0, seconds)
    return out


def run(sizes: Sizes, workdir: Path, smoke: bool = False) -> Result:
    raw = measure(workdir, smoke or sizes.ingest_records < 10_000)
    ingest = raw["ingest_readings_per_s"]
    median = {name: statistics.median(values) if values else None for name, values in ingest.items()}
    base, ours, hundred = median["baseline"], median["ours_shipped"], median["ours_100_rules"]
    # Rounds run back to back (baseline, ours, ours 100): the paired ratio cancels the host's drift.
    paired = [o / b for o, b in zip(ingest["ours_shipped"], ingest["baseline"])]
    ratio = statistics.median(paired) if paired else None
    raw["paired_ratios_shipped_over_baseline"] = paired
    ranks = raw["ranks"]
    held, p99 = ranks["load"]["records_per_s"], ranks["decision_ms"].get("p99_ms")
    rows = [
        Row("ingest readings/s, shipped rules (median of rounds)", ours, "readings/s", base,
            f"engine @{BASELINE}", better="higher", goal="paired ratio >= 0.90",
            passed=None if ratio is None else ratio >= GOAL_RATIO),
        Row("ingest readings/s, 100 rules", hundred, "readings/s", base, f"engine @{BASELINE}", better="higher"),
        Row("engine evaluations/s, shipped rules", raw["engine"]["ours_shipped"]["evaluations_per_s"], "readings/s",
            raw["engine"].get("baseline", {}).get("evaluations_per_s"), f"engine @{BASELINE}", better="higher"),
        Row("engine evaluations/s, 100 rules", raw["engine"]["ours_100_rules"]["evaluations_per_s"], "readings/s",
            better="higher"),
        Row(f"ingest held, {ranks['offered_per_s'] / 10:.0f} ranks x 10 records/s "
            f"({ranks['offered_per_s']:.0f}/s offered)", held, "records/s", better="higher",
            goal=f">= {0.98 * ranks['offered_per_s']:.0f}", passed=held >= 0.98 * ranks["offered_per_s"]),
        Row("decision p99 under that load", p99, "ms", goal="< 10 ms (dedicated cores)", passed=goal_below(p99, 10)),
    ]
    notes = [f"ingest, median of paired rounds ours/baseline = {ratio:.3f} ({', '.join(f'{r:.2f}' for r in paired)})"
             if ratio else "baseline not measured"]
    if ranks["stored"] != ranks["load"]["records"]:
        notes.append(f"256-rank run: {ranks['stored']} stored of {ranks['load']['records']} posted")
    return Result("rules_cost", "Rules as data: cost", rows=rows, raw=raw, notes=notes)


def main() -> None:
    parser = argparse.ArgumentParser(description="load process of the rules_cost benchmark")
    parser.add_argument("role", choices=["load", "bench"])
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--run")
    parser.add_argument("--ranks", type=int, default=256)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.role == "load":
        print(json.dumps(paced_load(args.url, args.token, args.run, args.ranks, args.rate, args.seconds)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        raw = measure(Path(tmp), args.smoke)
    text = json.dumps(raw, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
