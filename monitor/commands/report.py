"""``python -m monitor report RUN_ID -o report.html``: one self-contained HTML health report.

The file carries plotly.js, the styles and the data inline, so it can be mailed or
attached to a ticket and opened anywhere without the service or the internet. It reads
the database directly (read-only), so it also works while the service is down.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dashboards
from dashboards import views
from monitor.settings import Settings
from monitor.store import runs
from monitor.store.database import Database
from monitor.store.series import MAX_POINTS, MIN_POINTS


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser("report", help="write a self-contained HTML health report of one run")
    parser.add_argument("run_id", help="the run to report on")
    parser.add_argument("-o", "--output", help="file to write (default: report-<run_id>.html)")
    parser.add_argument("--database-url", help="default: MONITOR_DATABASE_URL or the embedded SQLite file")
    parser.add_argument("--max-points", type=int, help="points per chart (default: MONITOR_DEFAULT_MAX_POINTS)")
    parser.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Read the run, render the report, write it; progress goes to stderr."""
    settings = Settings()
    url = args.database_url or settings.database_url
    points = min(max(args.max_points or settings.default_max_points, MIN_POINTS), MAX_POINTS)
    output = Path(args.output or f"report-{args.run_id}.html")
    started = time.monotonic()
    db = Database(url, 1)
    try:
        html = build_report(db, args.run_id, points, _progress)
    finally:
        db.dispose()
    output.write_text(html, encoding="utf-8")
    _progress(f"wrote {output} ({len(html) / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")
    return 0


def build_report(db: Database, run_id: str, max_points: int, progress: views.Progress | None = None) -> str:
    """The report's HTML: the run page's content as a static snapshot, assets inlined."""
    with db.read_session() as session:
        run = runs.get_run(session, run_id)
        if progress:
            progress(f"run {run_id}: {run.record_count} records up to step {run.last_step}")
        context = views.run_page(session, run, max_points, progress)
    if progress:
        progress("rendering")
    return dashboards.render(
        "report.html",
        report=True,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        inline_css=dashboards.static_text("dashboard.css"),
        plotly_js=dashboards.static_text("plotly.min.js"),
        dashboard_js=dashboards.static_text("dashboard.js"),
        **context,
    )


def _progress(message: str) -> None:
    """Progress for the person running the command (stdout stays free for pipes)."""
    print(f"report: {message}", file=sys.stderr, flush=True)
