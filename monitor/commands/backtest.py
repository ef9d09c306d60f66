"""``python -m monitor backtest RUN_ID``: replay a stored run through the rules with other thresholds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``backtest`` subcommand."""
    parser = sub.add_parser(
        "backtest",
        help="replay a stored run with other thresholds and show when each rule would have fired",
        description="Examples: backtest RUN --set hyper_lora.lora_max_norm=2.0 --set monitor.batch_for=5; "
        "backtest RUN --config trainer.yaml",
    )
    parser.add_argument("run_id")
    parser.add_argument("--config", type=Path, help="a trainer YAML whose values override the run's config")
    parser.add_argument("--set", dest="pairs", action="append", default=[], metavar="KEY=VALUE",
                        help="override one dotted config key (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--database-url")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load overrides, replay, print."""
    from monitor.backtesting import dotted_overrides, format_report, merge_config, run_backtest
    from monitor.settings import Settings
    from monitor.store.database import Database

    overrides = yaml.safe_load(args.config.read_text()) or {} if args.config else {}
    overrides = merge_config(overrides, dotted_overrides(args.pairs))
    settings = Settings(**({"database_url": args.database_url} if args.database_url else {}))
    print(f"replaying run {args.run_id} ...", file=sys.stderr)
    summary = run_backtest(Database(settings.database_url, 1), args.run_id, overrides)
    print(json.dumps(summary, indent=2) if args.json else format_report(summary))
    return 0
