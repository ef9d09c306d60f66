"""What a large run config costs each 1-record ingest (docs/reliability.md, 16.3).

Usage: ``python scripts/config_ingest_cost.py sqlite|postgres [entries]`` (70,000 entries is a
7.3 MB config). In-process ``store_batch`` calls, no HTTP: prints the median CPU time of this
process and the median wall time per batch, for a small config and the large one. Configs
are stored through ``create_or_get_run`` (no size bound), as a run stored before the bound.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time

from monitor.ingest.work import store_batch
from monitor.settings import Settings
from monitor.store import runs
from monitor.store.database import Database
from monitor.store.migrate import upgrade
from tests.support.postgres import create_database, drop_database


def measure(db: Database, settings: Settings, run_id: str, config: dict, batches: int = 60) -> tuple[float, float]:
    """Median (CPU ms, wall ms) per 1-record batch."""
    with db.write_session() as session:
        runs.create_or_get_run(session, run_id, config=config)
    cpu, wall = [], []
    for step in range(batches):
        body = json.dumps({"records": [{"step": step, "epoch": 0, "lora_norm_max": 1.0}]}).encode()
        started_cpu, started = time.process_time(), time.perf_counter()
        store_batch(db, settings, run_id, body, "application/json")
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3


def main() -> None:
    kind = sys.argv[1]
    entries = int(sys.argv[2]) if len(sys.argv) > 2 else 70_000
    url = f"sqlite:///{tempfile.mkdtemp()}/monitor.db" if kind == "sqlite" else create_database()
    try:
        upgrade(url)
        db, settings = Database(url, 2), Settings(database_url=url)
        big = {"blob": {f"k{i}": "v" * 90 for i in range(entries)}}
        print(f"{kind}: large config {len(json.dumps(big)):,} bytes")
        for run_id, config in (("small", {"x": 1}), ("large", big)):
            cpu, wall = measure(db, settings, run_id, config)
            print(f"  {run_id:5}: cpu {cpu:6.2f} ms  wall {wall:6.2f} ms (medians per 1-record batch)")
        db.dispose()
    finally:
        if kind != "sqlite":
            drop_database(url)


if __name__ == "__main__":
    main()
