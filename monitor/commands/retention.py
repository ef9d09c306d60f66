"""``python -m monitor retention``: prune raw per-batch rows past the configured age.

Meant for a daily cron job / Kubernetes CronJob / ``docker compose run --rm retention``;
safe to re-run and to interrupt (each batch commits on its own). Off unless
``MONITOR_RETENTION_RAW_DAYS`` or ``--older-than-days`` says how old is old.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from monitor.settings import Settings


def register(subparsers: Any) -> None:
    """Add the ``retention`` subcommand."""
    parser = subparsers.add_parser(
        "retention", help="delete raw per-batch rows older than N days once their rollups exist",
        description="Charts of pruned ranges are drawn from the series rollups; rule states are unaffected.",
    )
    parser.add_argument("--older-than-days", type=float, default=None,
                        help="age in days (default: MONITOR_RETENTION_RAW_DAYS; unset = keep everything)")
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    parser.add_argument("--batch-rows", type=int, default=5000, help="rows per delete transaction")
    parser.add_argument("--database-url")
    parser.set_defaults(handler=cmd_retention)


def cmd_retention(args: argparse.Namespace) -> int:
    """Run one retention pass and print what it did."""
    from monitor.store.database import Database
    from monitor.store.retention import prune_raw_diagnostics

    settings = Settings(**({"database_url": args.database_url} if args.database_url else {}))
    days = args.older_than_days if args.older_than_days is not None else settings.retention_raw_days
    if days is None:
        print("retention is off: set MONITOR_RETENTION_RAW_DAYS or pass --older-than-days; nothing deleted")
        return 0
    if days < 0 or args.batch_rows < 1:
        raise ValueError("--older-than-days must be >= 0 and --batch-rows >= 1")
    db = Database(settings.database_url, 1)
    try:
        report = prune_raw_diagnostics(db, timedelta(days=days), dry_run=args.dry_run, batch_rows=args.batch_rows)
    finally:
        db.dispose()
    verb = "would delete" if report.dry_run else "deleted"
    for run in report.runs:
        print(f"run {run.run_id}: {verb} {run.deleted} raw rows; kept {run.kept_without_rollups} old rows "
              "without complete rollups")
    print(f"{verb} {report.deleted} raw rows older than {report.cutoff.isoformat()} "
          f"({len(report.runs)} runs); kept {report.kept_without_rollups} old rows without complete rollups")
    return 0
