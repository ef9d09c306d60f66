"""Command line: serve, migrate, token create, backtest, report."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from monitor.lifeline import SUPERVISOR_PID_ENV
from monitor.logging_setup import configure_logging, uvicorn_log_config
from monitor.settings import Settings

log = logging.getLogger("monitor.cli")


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with --database-url winning (also for worker processes)."""
    if getattr(args, "database_url", None):
        os.environ["MONITOR_DATABASE_URL"] = args.database_url
    return Settings()


def cmd_serve(args: argparse.Namespace) -> int:
    """Apply pending migrations, then run uvicorn."""
    import uvicorn

    from monitor.store.migrate import upgrade

    settings = _settings(args)
    if not args.no_migrate:
        upgrade(settings.database_url)
    from monitor.metrics import prepare_metrics_dir

    prepare_metrics_dir(args.workers)
    if args.workers > 1:  # each uvicorn worker ties its life to this process (monitor.lifeline)
        os.environ[SUPERVISOR_PID_ENV] = str(os.getpid())
    log.info("serving on http://%s:%s (database %s)", args.host, args.port, settings.database_url.split("@")[-1])
    uvicorn.run(
        "monitor.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=uvicorn_log_config(settings.log_level, settings.log_json),
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations and exit (for PostgreSQL deployments' one-shot job)."""
    from monitor.store.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.database_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    """Create an API token; prints it once (only its hash is stored)."""
    from monitor.auth import create_token
    from monitor.store.database import Database
    from monitor.store.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.database_url)
    token = create_token(Database(settings.database_url, 1), args.name)
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands register themselves here)."""
    parser = argparse.ArgumentParser(prog="python -m monitor", description="Training Health Monitor")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--database-url", help="default: MONITOR_DATABASE_URL or an embedded SQLite file")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--no-migrate", action="store_true", help="skip applying migrations")
    serve.add_argument("--graceful-timeout", type=int, default=20, help="seconds to finish in-flight requests")
    serve.set_defaults(handler=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply pending Alembic migrations")
    migrate.add_argument("--database-url")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(handler=cmd_migrate)

    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--name", default="cli")
    create.add_argument("--database-url")
    create.set_defaults(handler=cmd_token_create)

    for module in _command_modules():
        module.register(sub)
    return parser


def _command_modules() -> list[ModuleType]:
    """The subcommand modules that exist (each registers its own parser)."""
    from monitor.commands import COMMAND_MODULES

    found = []
    for name in COMMAND_MODULES:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI prints the reason, not a traceback
        log.debug("command failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
