"""The decision poll's plain-sqlite3 read: fresh snapshots, read-only, errors as SQLAlchemy's."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from monitor.store import runs
from monitor.store.database import Database
from monitor.store.migrate import upgrade
from monitor.store.models import Run
from monitor.store.sqlite_rows import SqliteRowReader
from monitor.store.unavailable import is_unavailable


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    upgrade(url)
    db = Database(url)
    with db.write_session() as session:
        session.add(Run(run_id="r1", name="r1", decision="continue", decision_body='{"v":1}', decision_version=1))
    yield db
    db.dispose()


def test_each_read_sees_the_latest_commit_of_another_connection(database: Database) -> None:
    assert database.sqlite_rows is not None
    assert runs.stored_decision(database, "r1").body == '{"v":1}'
    writer = Database(database.url)  # another engine, as an ingest worker process has
    with writer.write_session() as session:
        run = runs.get_run(session, "r1", lock=True)
        run.decision, run.decision_body, run.decision_version = "pause", '{"v":2}', 2
    writer.dispose()
    answer = runs.stored_decision(database, "r1")
    assert (answer.decision, answer.body, answer.version) == ("pause", '{"v":2}', 2)
    with pytest.raises(runs.RunNotFound):
        runs.stored_decision(database, "nope")


def test_the_connection_is_read_only(database: Database) -> None:
    with pytest.raises(DBAPIError) as caught:
        database.sqlite_rows.fetch_one("UPDATE runs SET decision = 'pause'", ())
    assert "readonly" in str(caught.value.orig).replace("-", "").lower()
    assert not is_unavailable(caught.value), "a refused statement is a bug (500), not an outage (503)"
    assert runs.stored_decision(database, "r1").decision == "continue"


def test_a_missing_database_is_unavailable_and_a_bad_query_is_not(tmp_path: Path) -> None:
    missing = SqliteRowReader(str(tmp_path / "no-such-dir" / "monitor.db"))
    with pytest.raises(DBAPIError) as caught:
        missing.fetch_one("SELECT 1", ())
    assert isinstance(caught.value.orig, sqlite3.OperationalError) and is_unavailable(caught.value)
    here = SqliteRowReader(str(tmp_path / "empty.db"))
    with pytest.raises(DBAPIError) as bad:
        here.fetch_one("SELECT decision FROM no_such_table", ())
    assert not is_unavailable(bad.value)
    here.close()


def test_every_thread_gets_its_own_connection_and_close_closes_them_all(database: Database) -> None:
    reader = database.sqlite_rows
    seen: list[tuple] = []
    threads = [threading.Thread(target=lambda: seen.append(reader.fetch_one("SELECT run_id FROM runs", ())))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [("r1",)] * 3
    assert len(reader._opened) == 3  # noqa: SLF001 - what close() must close
    opened = list(reader._opened)  # noqa: SLF001
    reader.close()
    for conn in opened:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    assert reader.fetch_one("SELECT run_id FROM runs", ()) == ("r1",), "usable again after close"


def test_only_plain_database_files_get_the_plain_reader(tmp_path: Path) -> None:
    assert Database("sqlite:///:memory:").sqlite_rows is None
    assert Database(f"sqlite:///file:{tmp_path / 'u.db'}?mode=rwc&uri=true").sqlite_rows is None
