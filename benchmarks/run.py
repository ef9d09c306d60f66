"""Run every benchmark, print the table (ours, peer, ratio, goal, pass) and write the JSON.

    python -m benchmarks.run [--smoke] [--only NAME ...] [--out benchmarks/results/latest.json]
                             [--service-cpus 0,1 [--client-cpus 4-15] [--load-processes N]]

``--smoke`` runs everything tiny (seconds) to check the scripts work; without the peers'
venv (``benchmarks/setup_peers.sh``) the peer columns are skipped with a note. Progress goes
to stderr, the table to stdout. Exit status 1 when a benchmark raised (not for a missed goal).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import decision, footprint, gpu, heavy_read, ingest, log_call, rules_cost, series_chart
from benchmarks.common import REPO_ROOT, Result, peers_python, say
from benchmarks.placement import Placement, parse_cpus
from benchmarks.report import machine, render_table, write_json
from benchmarks.sizes import FULL, SMOKE, Sizes

NAMES = ("log_call", "ingest", "decision", "series", "heavy_read", "footprint", "gpu_overhead", "rules_cost")
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "latest.json"
SMOKE_OUT = REPO_ROOT / "benchmarks" / "results" / "smoke.json"


class Suite:
    """Runs the chosen benchmarks in order; ingest's (and series') raw figures feed the footprint rows."""

    def __init__(self, sizes: Sizes, workdir: Path, smoke: bool, placement: Placement = Placement()) -> None:
        self.sizes, self.workdir, self.smoke, self.placement = sizes, workdir, smoke, placement
        self.results: dict[str, Result] = {}
        self._ingest_raw: dict[str, Any] | None = None

    def runner(self, name: str) -> Callable[[], Result]:
        return {
            "log_call": lambda: log_call.run(self.sizes, self.workdir),
            "ingest": lambda: ingest.run_from(self.ingest_raw()),
            "footprint": self.footprint,
            "decision": lambda: decision.run(self.sizes, self.workdir, self.placement),
            "series": lambda: series_chart.run(self.sizes, self.workdir),
            "heavy_read": lambda: heavy_read.run(self.sizes, self.workdir, self.placement),
            "gpu_overhead": lambda: gpu.run(self.sizes, self.workdir, self.smoke),
            "rules_cost": lambda: rules_cost.run(self.sizes, self.workdir, self.smoke),
        }[name]

    def ingest_raw(self) -> dict[str, Any]:
        if self._ingest_raw is None:
            self._ingest_raw = ingest.measure(self.sizes, self.workdir)
        return self._ingest_raw

    def footprint(self) -> Result:
        """From ingest's figures (measured now if ingest was not run), plus log_call's and series' if run."""
        logged, series = self.results.get("log_call"), self.results.get("series")
        tensorboard = logged.raw.get("peers", {}).get("tensorboard") if logged else None
        series_raw = series.raw if series and not series.error else None
        return footprint.run_from(self.ingest_raw(), tensorboard, series_raw)

    def run_one(self, name: str) -> Result:
        """Run one benchmark; an exception becomes an error result (the others still run)."""
        say(f"== {name} ==")
        load_before, start = os.getloadavg(), time.monotonic()
        try:
            result = self.runner(name)()
        except Exception as exc:  # noqa: BLE001 - report and go on with the rest of the suite
            traceback.print_exc(file=sys.stderr)
            result = Result(name, name, error=f"{type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - start
        result.raw["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
        say(f"== {name} done in {result.seconds:.1f}s ==")
        self.results[name] = result
        return result


def _cpu_list(text: str) -> frozenset[int]:
    """argparse type for ``--service-cpus``: the parse error becomes the usage message."""
    try:
        return parse_cpus(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="everything tiny: checks the scripts work")
    parser.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                        help=f"run just this benchmark (repeatable): {', '.join(NAMES)}")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON results (default {DEFAULT_OUT.relative_to(REPO_ROOT)}; "
                             f"smoke: {SMOKE_OUT.relative_to(REPO_ROOT)})")
    parser.add_argument("--service-cpus", type=_cpu_list, default=None, metavar="CPUS",
                        help="decision: pin the service to these CPUs (e.g. 0,1) and every client to the rest")
    parser.add_argument("--client-cpus", type=_cpu_list, default=None, metavar="CPUS",
                        help="decision: the load generators' and probe's CPUs (default: all but the service's)")
    parser.add_argument("--load-processes", type=int, default=2, metavar="N",
                        help="decision: load-generator processes (default 2; more on a big host, so the "
                             "service, not the generators, is the bottleneck)")
    args = parser.parse_args(argv)
    if args.load_processes < 1:
        parser.error("--load-processes must be at least 1")
    if args.service_cpus and args.client_cpus and args.service_cpus & args.client_cpus:
        parser.error("--service-cpus and --client-cpus overlap")
    if args.service_cpus and not args.client_cpus and args.service_cpus >= os.sched_getaffinity(0):
        parser.error("--service-cpus leaves no CPU for the clients")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    out = args.out or (SMOKE_OUT if args.smoke else DEFAULT_OUT)
    names = [name for name in NAMES if not args.only or name in args.only]
    meta = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": args.smoke, "sizes": asdict(sizes),
            "peers_venv": str(peers_python()) if peers_python() else None, "machine": machine()}
    placement = Placement(args.service_cpus, args.load_processes, args.client_cpus)
    meta["placement"] = placement.describe()
    if peers_python() is None:
        say("peers venv missing (benchmarks/setup_peers.sh): peer columns will be empty")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        suite = Suite(sizes, Path(tmp), args.smoke, placement)
        results = [suite.run_one(name) for name in names]
    meta["total_seconds"] = round(time.monotonic() - start, 1)
    write_json(out, results, meta)
    print(render_table([r.to_dict() for r in results]))
    for result in results:
        for note in result.notes:
            print(f"note [{result.name}]: {note}")
    print(f"\nJSON: {out}  ({meta['total_seconds']}s)")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
