"""Soak test: N concurrent runs stream diagnostics and poll decisions against a real service.

Why: the per-request benchmarks say how fast one call is; this says whether the
service *holds* that under sustained concurrent load (throughput per 10 s window,
decision latency, memory), answers without a single error, and stores every
record exactly once. Loopback only; the offered load is fixed and bounded.

    python scripts/soak.py --runs 32 --duration 120                 # SQLite, own service
    python scripts/soak.py --runs 32 --duration 120 --database postgres
    python scripts/soak.py --url http://127.0.0.1:8765 --token ...  # an already running service

Prints a table per window and writes everything to --json. Exit status 1 on any
error or count mismatch.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

COLLAPSE_CONFIG = {"monitor": {"batch_for": 3}}
COLLAPSE_EVERY = 4  # every 4th run collapses half way: rules fire and the decision must turn to pause


@dataclass
class RunLog:
    """What one run's streamer and poller saw (times are Unix seconds)."""

    run_id: str
    collapses: bool
    sent: int = 0  # records acknowledged by the service
    ingest: list[tuple[float, float, int]] = field(default_factory=list)  # (done_at, seconds, records)
    polls: list[tuple[float, float]] = field(default_factory=list)  # (done_at, seconds)
    errors: list[str] = field(default_factory=list)
    last_decision: str | None = None


def readings(step: int, collapsed: bool, rng: random.Random) -> dict[str, float]:
    """Healthy values, or collapsed attention (fires attention_collapse)."""
    return {"loss": 2.0 / (1 + step / 500) + rng.random() * 0.05, "accuracy": 0.5 + rng.random() * 0.01,
            "grad_norm": 1.0 + rng.random(), "lora_norm_mean": 1.1, "lora_norm_max": 1.6,
            "stop_logit_var": 0.6, "attention_entropy": 3.0,
            "attention_max": 0.001 if collapsed else 0.6 + rng.random() * 0.1}


def post_until_stored(client: httpx.Client, log: RunLog, body: bytes, count: int, give_up_at: float) -> None:
    """POST one batch; every failed attempt is an error, retried (the server deduplicates)."""
    while True:
        started = time.time()
        try:
            response = client.post(f"/api/v1/runs/{log.run_id}/diagnostics", content=body)
            if response.status_code == 200:
                log.ingest.append((time.time(), time.time() - started, count))
                log.sent += count
                return
            log.errors.append(f"ingest HTTP {response.status_code}: {response.text[:200]}")
        except httpx.HTTPError as exc:
            log.errors.append(f"ingest {type(exc).__name__}: {exc}")
        if time.time() > give_up_at:
            return
        time.sleep(0.2)


def stream(client: httpx.Client, log: RunLog, opts: dict[str, Any], start_at: float) -> None:
    """Send rate*interval records every interval until the duration is over."""
    rng, step, tick = random.Random(log.run_id), 0, 0
    end_at, per_batch = start_at + opts["duration"], max(1, round(opts["rate"] * opts["batch_interval"]))
    while True:
        due = start_at + tick * opts["batch_interval"]
        if due >= end_at:
            return
        time.sleep(max(0.0, due - time.time()))
        collapsed = log.collapses and due >= start_at + opts["duration"] / 2
        records = [{"step": s, "epoch": s // 1000, **readings(s, collapsed, rng)} for s in range(step, step + per_batch)]
        post_until_stored(client, log, json.dumps({"records": records}).encode(), per_batch, end_at + 60)
        step, tick = step + per_batch, tick + 1


def poll(client: httpx.Client, log: RunLog, opts: dict[str, Any], start_at: float) -> None:
    """Ask for the decision every poll interval (what an EscalationGate does)."""
    end_at, tick = start_at + opts["duration"], 0
    while True:
        due = start_at + 0.25 + tick * opts["poll_interval"]
        if due >= end_at:
            return
        time.sleep(max(0.0, due - time.time()))
        started = time.time()
        try:
            response = client.get("/escalation/decision", params={"run_id": log.run_id})
            if response.status_code == 200:
                log.polls.append((time.time(), time.time() - started))
                log.last_decision = response.json()["decision"]
            else:
                log.errors.append(f"decision HTTP {response.status_code}: {response.text[:200]}")
        except httpx.HTTPError as exc:
            log.errors.append(f"decision {type(exc).__name__}: {exc}")
        tick += 1


def worker(run_ids: list[str], opts: dict[str, Any], start_at: float, out: Any) -> None:
    """One load process: a streamer and a poller thread per run, one HTTP connection each."""
    logs = [RunLog(run_id, collapses=int(run_id.rsplit("-", 1)[1]) % COLLAPSE_EVERY == 0) for run_id in run_ids]
    headers = {"Authorization": f"Bearer {opts['token']}", "Content-Type": "application/json"}
    clients: list[httpx.Client] = []
    threads = []
    for log in logs:
        for target in (stream, poll):
            client = httpx.Client(base_url=opts["url"], headers=headers, timeout=30)
            clients.append(client)
            threads.append(threading.Thread(target=target, args=(client, log, opts, start_at), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    out.put([asdict(log) for log in logs])


# ------------------------------------------------------------------------------ the service
@contextmanager
def own_service(database: str, workers: int) -> Iterator[tuple[str, str, Callable[[], int | None]]]:
    """Start ``python -m monitor serve`` on a fresh database; yields (url, token, pid getter)."""
    from tests.support.service import LiveService

    folder = Path(tempfile.mkdtemp(prefix="thm-soak-"))
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if database == "sqlite":
        url = f"sqlite:///{folder / 'monitor.db'}"
    elif database == "postgres":
        from tests.support.postgres import create_database, drop_database

        url = create_database("monitor_soak")
        drop = lambda: drop_database(url)  # noqa: E731
    else:
        url = database
    service = LiveService(url, "soak-" + secrets.token_hex(12), folder / "service.log", workers=workers).start()
    try:
        yield service.base_url, service.token, lambda: service.process.pid if service.process else None
    finally:
        service.close()
        drop()
        errors = [line for line in service.log_tail(10**7).splitlines() if "Traceback" in line or " ERROR " in line]
        if errors:
            print(f"service log has {len(errors)} error line(s); see {folder / 'service.log'}", file=sys.stderr)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds the service process has used (Linux), for its CPU share per window."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError, IndexError, ValueError):
        return None


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of the service process (Linux), for the growth check."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return None


# ------------------------------------------------------------------------------ reporting
def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def windows(logs: list[dict[str, Any]], start_at: float, duration: float, width: float,
            samples: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    """Per-window throughput and latency from every run's log, with the sampled memory and load."""
    rows = []
    for index in range(int(duration // width)):
        low, high = start_at + index * width, start_at + (index + 1) * width
        ingest = [item for log in logs for item in log["ingest"] if low <= item[0] < high]
        polls = [item[1] for log in logs for item in log["polls"] if low <= item[0] < high]
        rows.append({"window": f"{index * width:.0f}-{(index + 1) * width:.0f}s",
                     "records_per_s": sum(item[2] for item in ingest) / width,
                     "ingest_requests": len(ingest), "ingest_p99_ms": percentile([i[1] for i in ingest], 0.99) * 1e3,
                     "decisions": len(polls), "decision_p50_ms": percentile(polls, 0.5) * 1e3,
                     "decision_p99_ms": percentile(polls, 0.99) * 1e3, "service_rss_mb": samples.get(index, {}).get("rss"),
                     "load_avg_1m": samples.get(index, {}).get("load"), "service_cpu_pct": _cpu_pct(samples, index)})
    return rows


def _cpu_pct(samples: dict[int, dict[str, float]], index: int) -> float | None:
    """The service's CPU use in a window, in % of one core (None for an external service)."""
    sample = samples.get(index, {})
    if not sample.get("cpu1") or sample["t1"] <= sample["t0"]:
        return None
    return 100 * (sample["cpu1"] - sample["cpu0"]) / (sample["t1"] - sample["t0"])


def verify(url: str, token: str, logs: list[dict[str, Any]], rows: bool) -> list[str]:
    """record_count == acknowledged records per run (and each step once, with --verify-rows)."""
    problems = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        for log in logs:
            run = client.get(f"/api/v1/runs/{log['run_id']}").json()
            if run["record_count"] != log["sent"]:
                problems.append(f"{log['run_id']}: record_count {run['record_count']} != sent {log['sent']}")
            if rows:
                steps = stored_steps(client, log["run_id"])
                if steps != list(range(log["sent"])):
                    problems.append(f"{log['run_id']}: stored steps are not 0..{log['sent'] - 1} exactly once")
            expected = "pause" if log["collapses"] else "continue"
            final = client.get("/escalation/decision", params={"run_id": log["run_id"]}).json()["decision"]
            if final != expected:
                problems.append(f"{log['run_id']}: decision {final}, expected {expected}")
    return problems


def stored_steps(client: httpx.Client, run_id: str) -> list[int]:
    """Every stored step of a run, page by page (one page holds MONITOR_MAX_RECORDS_PER_PAGE)."""
    steps: list[int] = []
    cursor = None
    while True:
        params = {"cursor": cursor} if cursor else {}
        response = client.get(f"/api/v1/runs/{run_id}/diagnostics", params=params)
        response.raise_for_status()
        body = response.json()
        steps.extend(record["step"] for record in body["records"])
        cursor = body["next_cursor"]
        if cursor is None:
            return steps


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"{'window':>10} {'records/s':>10} {'ingest req':>10} {'ingest p99':>11} {'decisions':>9} "
          f"{'dec p50':>8} {'dec p99':>8} {'RSS MB':>7} {'CPU%':>5} {'load':>5}")
    for row in rows:
        rss = f"{row['service_rss_mb']:.0f}" if row["service_rss_mb"] else "-"
        print(f"{row['window']:>10} {row['records_per_s']:>10.0f} {row['ingest_requests']:>10} "
              f"{row['ingest_p99_ms']:>9.1f}ms {row['decisions']:>9} {row['decision_p50_ms']:>6.1f}ms "
              f"{row['decision_p99_ms']:>6.1f}ms {rss:>7} {row['service_cpu_pct'] or 0:>5.0f} "
              f"{row['load_avg_1m'] or 0:>5.1f}")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("windows", "problems", "error_samples")},
                     indent=1))
    for problem in summary["problems"] + summary["error_samples"]:
        print("PROBLEM:", problem)


def run_load(opts: dict[str, Any], procs: int, pid: Callable[[], int | None]) -> tuple[list[dict], float, dict]:
    """Spread the runs over ``procs`` processes; sample the service's memory and the load average meanwhile."""
    prefix = f"soak-{secrets.token_hex(3)}"  # fresh runs, also against a long-lived --url service
    run_ids = [f"{prefix}-{index}" for index in range(opts["runs"])]
    with httpx.Client(base_url=opts["url"], headers={"Authorization": f"Bearer {opts['token']}"}) as client:
        for index, run_id in enumerate(run_ids):
            body = {"project": "soak", "config": COLLAPSE_CONFIG if index % COLLAPSE_EVERY == 0 else {}}
            client.put(f"/api/v1/runs/{run_id}", json=body).raise_for_status()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 3.0  # every process starts the clock together
    workers = [context.Process(target=worker, args=(run_ids[i::procs], opts, start_at, out)) for i in range(procs)]
    for process in workers:
        process.start()
    samples: dict[int, dict[str, float]] = {}
    while time.time() < start_at + opts["duration"]:
        index = int((time.time() - start_at) // opts["window"])
        if index >= 0:
            now, cpu = time.time(), cpu_seconds(pid()) or 0.0
            sample = samples.setdefault(index, {"load": 0.0, "t0": now, "cpu0": cpu})
            sample["load"] = max(sample["load"], os.getloadavg()[0])  # other work on the box shows here
            sample["t1"], sample["cpu1"] = now, cpu
            if (value := rss_mb(pid())) is not None:
                sample["rss"] = max(sample.get("rss", 0.0), value)
        time.sleep(1.0)
    logs = [log for _ in workers for log in out.get(timeout=opts["duration"] + 180)]
    for process in workers:
        process.join(30)
    return logs, start_at, samples


def summarise(args: argparse.Namespace, logs: list[dict[str, Any]], rows: list[dict[str, Any]],
              problems: list[str]) -> dict[str, Any]:
    """The figures docs/reliability.md quotes, plus the per-window rows."""
    polls = [item[1] for log in logs for item in log["polls"]]
    errors = [error for log in logs for error in log["errors"]]
    rates = [row["records_per_s"] for row in rows]
    return {
        "runs": args.runs, "duration_s": args.duration, "database": "external" if args.url else args.database,
        "offered_records_per_s": args.runs * args.rate, "records_stored": sum(log["sent"] for log in logs),
        "records_per_s_min_window": min(rates, default=0.0), "records_per_s_max_window": max(rates, default=0.0),
        "decisions": len(polls), "decision_p50_ms": percentile(polls, 0.5) * 1e3,
        "decision_p99_ms": percentile(polls, 0.99) * 1e3, "decision_max_ms": max(polls, default=0.0) * 1e3,
        "ingest_p99_ms": percentile([i[1] for log in logs for i in log["ingest"]], 0.99) * 1e3,
        "errors": len(errors), "counts_match": not problems, "problems": problems, "error_samples": errors[:10],
        "cpu_count": os.cpu_count(), "windows": rows,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of streaming")
    parser.add_argument("--rate", type=float, default=50.0, help="steps per second per run")
    parser.add_argument("--batch-interval", type=float, default=0.5, help="seconds between a run's POSTs")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between a run's decision polls")
    parser.add_argument("--window", type=float, default=10.0, help="report window, seconds")
    parser.add_argument("--procs", type=int, default=4, help="load-generating processes")
    parser.add_argument("--database", default="sqlite", help="sqlite, postgres (local test server) or a URL")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the service we start")
    parser.add_argument("--url", help="use this running service instead of starting one")
    parser.add_argument("--token", help="token for --url")
    parser.add_argument("--verify-rows", action="store_true", help="also read every stored step back")
    parser.add_argument("--json", type=Path, default=Path("soak-result.json"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start (or use) a service, run the load, verify, report; 1 on any error or mismatch."""
    args = _parser().parse_args(argv)
    opts = {k: getattr(args, k) for k in ("runs", "duration", "rate", "batch_interval", "poll_interval", "window")}

    @contextmanager
    def external() -> Iterator[tuple[str, str, Callable[[], int | None]]]:
        yield args.url, args.token, lambda: None

    with (external() if args.url else own_service(args.database, args.workers)) as (url, token, pid):
        opts.update(url=url, token=token)
        logs, start_at, samples = run_load(opts, max(1, min(args.procs, args.runs)), pid)
        problems = verify(url, token, logs, args.verify_rows)
    rows = windows(logs, start_at, args.duration, args.window, samples)
    summary = summarise(args, logs, rows, problems)
    args.json.write_text(json.dumps(summary, indent=1))
    print_table(rows, summary)
    return 0 if not summary["errors"] and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
