"""Application factory: wires settings, database, auth and routes."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from monitor import __version__
from monitor.alerts.worker import DeliveryWorker
from monitor.api import (
    backtest, diagnostics, epochs, escalation, health, metrics, pages, rules, runs, series, webhooks,
)
from monitor.api.decision_poll import DecisionPoll
from monitor.api.docs import install_docs
from monitor.api.errors import install_error_handlers
from monitor.api.internal_error import install_internal_error_handler
from monitor.api.limits import BodySizeLimit, QueryStringLimit
from monitor.api.raw_body import add_body_schemas
from monitor.api.request_metrics import RequestMetrics
from monitor.api.token_gate import TokenGate
from monitor.auth import TokenVerifier
from monitor.gc_tuning import tune_gc
from monitor.ingest.executors import ingest_executor
from monitor.lifeline import SUPERVISOR_PID_ENV, die_with_parent, parent_from_env
from monitor.settings import Settings, get_settings
from monitor.stale_sweep import StaleSweeper
from monitor.store.async_rows import AsyncRowReader, libpq_conninfo
from monitor.store.database import Database, normalise_url
from monitor.store.decision_listener import DecisionListener

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    supervisor = parent_from_env(SUPERVISOR_PID_ENV)
    if supervisor is not None:  # a worker of ``serve --workers N``: it ends with its supervisor
        die_with_parent(supervisor, signal.SIGTERM)
    db = Database(settings.database_url, settings.db_pool_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not app.state.verifier.has_any:
            log.warning("no API token configured: every API call will get 401 "
                        "(set MONITOR_API_TOKEN or run `python -m monitor token create`)")
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
        tune_gc(settings.gc_gen0_threshold)
        worker = DeliveryWorker(db, settings)
        app.state.delivery_worker = worker
        app.state.row_reader = None if db.is_sqlite else AsyncRowReader(libpq_conninfo(db.url))
        app.state.ingest = ingest_executor(settings, db)
        listener = _decision_listener(settings, db)
        await app.state.ingest.start()
        worker.start()
        sweeper = StaleSweeper(db, settings.public_url, settings.stale_sweep_seconds)
        sweeper.start()
        if listener is not None:
            listener.start()
        try:
            yield
        finally:
            sweeper.stop()
            if listener is not None:
                await listener.stop()
            await app.state.ingest.close()
            worker.stop()
            if app.state.row_reader is not None:
                await app.state.row_reader.close()
            db.dispose()

    app = FastAPI(
        title="Training Health Monitor",
        version=__version__,
        description="Stores per-batch training diagnostics, evaluates health rules, "
        "and answers pause/continue for meta-escalation.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from local files (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.verifier = TokenVerifier(db, settings.api_token)
    install_error_handlers(app)
    install_internal_error_handler(app)
    install_docs(app)
    add_body_schemas(app)
    for module in (health, metrics, runs, rules, diagnostics, epochs, series, escalation, backtest, webhooks, pages):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(QueryStringLimit, max_bytes=settings.max_query_bytes)
    app.add_middleware(TokenGate)  # outside the body limit: a stranger's body is never read
    app.add_middleware(RequestMetrics)
    app.add_middleware(DecisionPoll)  # outermost: the trainers' poll skips the rest when it can
    return app


def _decision_listener(settings: Settings, db: Database) -> DecisionListener | None:
    """PostgreSQL's feed of stored answers into ``db.decisions`` (none: every poll reads the database)."""
    if db.is_sqlite or not settings.decision_notifications:
        return None
    listen_url = normalise_url(settings.listen_database_url or db.url)
    return DecisionListener(libpq_conninfo(listen_url), db.decisions)
