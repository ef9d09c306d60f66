"""The decision poll's async PostgreSQL reads: pooled, recovering from dropped connections."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from monitor.store.async_rows import AsyncRowReader, libpq_conninfo
from monitor.store.unavailable import DatabaseUnavailable
from tests.support.service import free_port

pytestmark = pytest.mark.postgres


def test_reads_reuse_connections_and_survive_killed_backends(postgres_url: str) -> None:
    conninfo = libpq_conninfo(postgres_url)

    async def scenario() -> tuple[set[int], int, int]:
        reader = AsyncRowReader(conninfo, size=2)
        try:
            pids = {(await reader.fetch_one("SELECT pg_backend_pid()", ()))[0] for _ in range(20)}
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (next(iter(pids)),))
            after = (await reader.fetch_one("SELECT pg_backend_pid()", ()))[0]
            value = (await reader.fetch_one("SELECT %s::int + 1", (41,)))[0]
            return pids, after, value
        finally:
            await reader.close()

    pids, after, value = asyncio.run(scenario())
    assert len(pids) == 1, "sequential reads reuse one pooled connection"
    assert after not in pids, "the killed connection was replaced"
    assert value == 42


def test_unreachable_server_is_database_unavailable() -> None:
    reader = AsyncRowReader(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    with pytest.raises(DatabaseUnavailable):
        asyncio.run(reader.fetch_one("SELECT 1", ()))


def test_a_bad_query_is_not_unavailable(postgres_url: str) -> None:
    async def scenario() -> None:
        reader = AsyncRowReader(libpq_conninfo(postgres_url))
        try:
            await reader.fetch_one("SELECT no_such_column FROM pg_class", ())
        finally:
            await reader.close()

    with pytest.raises(psycopg.errors.UndefinedColumn):
        asyncio.run(scenario())
