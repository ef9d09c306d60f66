"""(5) Memory and disk per million readings, from the ingestion runs (ours on SQLite/PostgreSQL, MLflow).

Disk: SQLite file + WAL + SHM, or ``pg_database_size`` (tables, indexes, TOAST), before and
after loading; memory: RSS growth of the whole server process tree over the same load, and
its PSS after the load (shared pages split fairly between a multi-process server's processes).
A reading is one metric value (a record of one batch carries 8 in these benchmarks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from benchmarks.common import Result, Row

MIB = 1024 * 1024


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite:///`` URL."""
    return Path(make_url(url).database or "")


def database_bytes(url: str) -> int:
    """Bytes the database occupies now."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def per_million(before: int, after: int, readings: int) -> float | None:
    """MiB per million readings (None when nothing was loaded)."""
    return None if readings <= 0 else (after - before) / MIB / readings * 1e6


def _rows_for(label: str, ours: dict[str, Any], peer: dict[str, Any] | None, peer_name: str) -> list[Row]:
    """Disk per million (vs peer), RSS growth per million (ours only: the peer's small load makes its
    growth mostly worker warm-up, so a ratio would mislead; it stays in the raw JSON), PSS after load."""
    disk = per_million(ours["db_bytes_before"], ours["db_bytes_after"], ours["readings"])
    rss = per_million(ours["rss_before"], ours["rss_after"], ours["readings"])
    peer_disk = per_million(peer["db_bytes_before"], peer["db_bytes_after"], peer["readings"]) if peer else None
    name = peer_name if peer else None
    return [Row(f"disk MiB/1M readings ({label})", disk, "MiB", peer_disk, name),
            Row(f"RSS growth MiB/1M readings ({label})", rss, "MiB"),
            Row(f"server PSS after load ({label})", ours["pss_after"] / MIB, "MiB",
                peer["pss_after"] / MIB if peer else None, name)]


def _count(readings: int) -> str:
    """1.6M, 32k: how big the load behind a per-million figure was."""
    return f"{readings / 1e6:.3g}M" if readings >= 1e6 else f"{readings / 1e3:.3g}k"


FIELDS = ("readings", "db_bytes_before", "db_bytes_after", "rss_before", "rss_after", "pss_after")


def run_from(ingest_raw: dict[str, Any], tensorboard: dict[str, Any] | None = None,
             series_raw: dict[str, Any] | None = None) -> Result:
    """Footprint rows from the before/after measurements of the ingestion (and series) benchmarks."""
    result = Result("footprint", "Memory and disk per million readings (MiB)", raw={})
    peer = ingest_raw.get("peers", {}).get("mlflow")
    for kind, ours in ingest_raw.get("ours", {}).items():
        result.rows += _rows_for(f"{kind}, {_count(ours['readings'])} readings", ours, peer, "mlflow (sqlite)")
        result.raw[kind] = {key: ours[key] for key in FIELDS}
    if peer:
        result.raw["mlflow"] = {key: peer[key] for key in FIELDS}
        result.notes.append(f"mlflow figures from {peer['readings']:,} readings (its ingest rate limits the load)")
    else:
        result.notes.append("peers skipped: benchmarks/.venv-peers missing (run benchmarks/setup_peers.sh)")
    sqlite = ingest_raw.get("ours", {}).get("sqlite")
    if tensorboard and sqlite:
        result.rows.append(Row("disk MiB/1M readings (sqlite vs event file)",
                               per_million(sqlite["db_bytes_before"], sqlite["db_bytes_after"], sqlite["readings"]),
                               "MiB", tensorboard["bytes_per_million_readings"] / MIB, "tensorboard"))
    if series_raw:
        big = {**series_raw["footprint"], "readings": series_raw["records"] * 8}
        result.rows += _rows_for(f"{series_raw['kind']}, {_count(big['readings'])}-reading run", big, None, "")
        result.raw["series_run"] = big
    result.notes.append("memory is the whole server process tree (ours: 1 uvicorn worker and its ingest "
                        "worker process; mlflow server: its default 4 workers plus its job runner's huey "
                        "consumers); PSS splits shared pages fairly. RSS growth is measured after warmup "
                        "requests; it is allocator high-water and caches, not a leak measure. No goal was set here")
    return result
