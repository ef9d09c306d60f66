"""Service settings, read from the environment with the ``MONITOR_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("monitor-data")


class Settings(BaseSettings):
    """Every knob of the service; one instance per process."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_DATA_DIR / 'monitor.db'}",
        description="SQLAlchemy URL; sqlite:///path or postgresql+psycopg://user@host/db",
    )
    decision_notifications: bool = Field(
        default=True, description="PostgreSQL: keep each process's copy of the decision answers current with "
        "LISTEN/NOTIFY, so most polls need no database read (false: every poll reads the database).",
    )
    listen_database_url: str | None = Field(
        default=None, description="Where the LISTEN connection goes (default: database_url). Behind PgBouncer in "
        "transaction mode, point it at PostgreSQL itself: LISTEN needs a session of its own.",
    )
    api_token: str = Field(
        default="",
        description="Comma-separated bearer tokens accepted besides those created with `token create`.",
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, description="Larger request bodies get 413.")
    max_records_per_request: int = Field(default=50_000)
    max_step_jump: int = Field(
        default=10_000_000, ge=1, description="A record whose step is more than this above its rank's last step "
        "(0 for a rank's first record) is refused with 422: one wild step would otherwise make every later "
        "record late.",
    )
    max_config_depth: int = Field(
        default=32, ge=1, le=200, description="Deepest nesting of a run config (the config itself is level 1); "
        "deeper is 422. Far below what JSON encoders and decoders give up at (~255-1000).",
    )
    max_config_bytes: int = Field(
        default=256 * 1024, ge=2, description="Largest run config, as compact JSON; larger is 422.",
    )
    public_url: str = Field(default="http://127.0.0.1:8765", description="Base of dashboard links in alerts.")
    default_max_points: int = Field(default=2000, description="Points per chart series unless asked otherwise.")
    series_max_metrics: int = Field(
        default=32, ge=1, description="Metrics one series request may ask for; more get 422 (each costs a scan)."
    )
    max_query_bytes: int = Field(default=4096, ge=256, description="Longer query strings get 414.")
    max_records_per_page: int = Field(
        default=10_000, ge=1, description="Raw records one GET .../diagnostics page may hold (`limit` above: 422); "
        "follow `next_cursor` for the rest.",
    )
    read_concurrency: int = Field(
        default=2, ge=1, description="Heavy reads (series, raw records, dashboard data) served at once per server "
        "process; the rest wait, so they cannot starve the decision poll of the interpreter or the pool.",
    )
    read_wait_seconds: float = Field(
        default=10.0, ge=0, description="A heavy read waiting longer than this for a slot gets 503 with Retry-After."
    )
    webhook_poll_seconds: float = Field(default=0.5)
    stale_sweep_seconds: float = Field(
        default=30.0, ge=0, description="How often stale-stream rules (no record for N s) are swept; 0 = never.")
    webhook_max_attempts: int = Field(default=8)
    webhook_backoff_base_seconds: float = Field(default=1.0)
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect and per-read timeout of one webhook attempt."
    )
    webhook_attempt_deadline_seconds: float = Field(
        default=10.0, gt=0, description="Total wall-clock limit of one webhook attempt (connect to status line); "
        "must be shorter than the lease, so no other process can claim a delivery while it is being sent.",
    )
    webhook_allow_private: bool = Field(
        default=True, description="Allow loopback/private receiver addresses (off in hardened deployments)."
    )
    webhook_backoff_max_seconds: float = Field(default=600.0, description="Cap of the retry delay.")
    webhook_lease_seconds: float = Field(
        default=60.0, description="A claimed delivery not finished within this is retried (process died)."
    )
    webhook_concurrency: int = Field(default=4, ge=1, description="Parallel sends per process.")
    webhook_concurrency_per_receiver: int = Field(
        default=2, ge=1, description="Parallel sends per process to one receiver (scheme, host, port), so a slow "
        "receiver cannot hold every delivery slot.",
    )
    log_json: bool = Field(default=False, description="Emit one JSON object per log line.")
    log_level: str = Field(default="INFO")
    db_pool_size: int = Field(default=10)
    gil_switch_interval_ms: float = Field(
        default=0.5, gt=0, description="Python thread switch interval: short keeps reads snappy under ingest load."
    )
    gc_gen0_threshold: int = Field(
        default=10_000, ge=100, description="Allocations between young-generation collections (CPython's "
        "default is 700); see monitor.gc_tuning.",
    )
    ingest_mode: Literal["process", "thread"] = Field(
        default="process", description="Where ingestion work runs: `process` -- worker processes of each server "
        "process, so ingestion never holds the interpreter the decision poll is served from; `thread` -- worker "
        "threads of the server process (one process less; the mode an in-memory SQLite database always gets).",
    )
    ingest_concurrency: int = Field(
        default=1, ge=1, description="Ingest requests processed at once per server process (its ingest worker "
        "processes, or threads); more wait their turn. 2 buys ~10 % bulk-import throughput (benchmarks/README.md).",
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a token (for a scraper on a private network)."
    )
    retention_raw_days: float | None = Field(
        default=None, ge=0, description="`retention` prunes raw per-batch rows older than this (rollups stay)."
    )

    @model_validator(mode="after")
    def _attempt_fits_in_lease(self) -> "Settings":
        """Refuse to start with a lease that could run out mid-send (a second process would send again)."""
        if self.webhook_attempt_deadline_seconds >= self.webhook_lease_seconds:
            raise ValueError("MONITOR_WEBHOOK_ATTEMPT_DEADLINE_SECONDS must be shorter than "
                             "MONITOR_WEBHOOK_LEASE_SECONDS")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own Settings instead)."""
    return Settings()
