"""The pieces of the worker-process protocol: frames over a real pipe, and errors carried back."""

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import threading

import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from monitor.ingest.executors import ThreadIngest, ingest_executor
from monitor.ingest.failures import IngestFailed, InvalidBody, TooManyRecords, WorkFailure, describe
from monitor.ingest.frames import encode, read_frame, read_frame_async, write_frame
from monitor.ingest.messages import Job, Reply
from monitor.ingest.work import store_batch
from monitor.settings import Settings
from monitor.store.database import Database
from monitor.store.runs import RunNotFound
from monitor.store.unavailable import DatabaseUnavailable


def test_frames_cross_a_pipe_in_order_and_end_cleanly() -> None:
    read_end, write_end = os.pipe()
    messages = [Job(store_batch, ("run", b"x" * 200_000, "application/json")), Reply(result={"accepted": 3}), None]
    def send() -> None:  # the body is bigger than the pipe's buffer: the writer needs a reader
        with os.fdopen(write_end, "wb") as writer:
            for message in messages:
                write_frame(writer, message)

    sender = threading.Thread(target=send)
    sender.start()
    with os.fdopen(read_end, "rb") as reader:
        got = [read_frame(reader) for _ in messages]
        assert read_frame(reader) is None, "a closed pipe reads as the end, not as an error"
    sender.join(10)
    assert got[0] == messages[0] and got[0].work is store_batch
    assert got[1:] == messages[1:]


def test_a_frame_cut_short_is_an_error() -> None:
    read_end, write_end = os.pipe()
    frame = encode({"records": list(range(1000))})
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        writer.write(frame[: len(frame) // 2])
        writer.close()
        with pytest.raises(EOFError):
            read_frame(reader)


def test_async_reader_reads_what_the_blocking_writer_wrote() -> None:
    async def scenario() -> list[object]:
        reader = asyncio.StreamReader()
        for message in ("a", {"b": 2}):
            reader.feed_data(encode(message))
        reader.feed_data(encode(3)[:5])
        reader.feed_eof()
        got = [await read_frame_async(reader), await read_frame_async(reader)]
        with pytest.raises(asyncio.IncompleteReadError):
            await read_frame_async(reader)
        return got

    assert asyncio.run(scenario()) == ["a", {"b": 2}]


def _driver_error(exc_type: type, orig: Exception) -> Exception:
    return exc_type("SELECT 1", {}, orig)


@pytest.mark.parametrize(("raised", "expected_type", "check"), [
    (InvalidBody([{"type": "json_invalid", "loc": ("body", 1), "msg": "bad"}]), InvalidBody,
     lambda exc: exc.errors == [{"type": "json_invalid", "loc": ("body", 1), "msg": "bad"}]),
    (TooManyRecords(10), TooManyRecords, lambda exc: str(exc) == "at most 10 records per request"),
    (RunNotFound("nope"), RunNotFound, lambda exc: exc.run_id == "nope" and "nope" in str(exc)),
    (DatabaseUnavailable("connection refused"), DatabaseUnavailable, lambda exc: "refused" in str(exc)),
    (_driver_error(OperationalError, sqlite3.OperationalError("database is locked")), DatabaseUnavailable,
     lambda exc: "locked" in str(exc)),
    (_driver_error(ProgrammingError, sqlite3.ProgrammingError("no such column: x")), IngestFailed,
     lambda exc: str(exc) == "internal error (database)"),
    (ZeroDivisionError("oops"), IngestFailed, lambda exc: str(exc) == "internal error (ingestion)"),
])
def test_a_worker_error_is_raised_again_as_the_thread_mode_raises_it(raised: Exception, expected_type: type,
                                                                   check) -> None:
    failure = pickle.loads(pickle.dumps(describe(raised)))
    assert isinstance(failure, WorkFailure)
    with pytest.raises(expected_type) as caught:
        failure.raise_again()
    assert check(caught.value)


def test_in_memory_sqlite_gets_threads_whatever_the_mode(tmp_path) -> None:
    memory = Database("sqlite:///:memory:")
    assert isinstance(ingest_executor(Settings(database_url="sqlite:///:memory:"), memory), ThreadIngest)
    on_disk = Database(f"sqlite:///{tmp_path / 'm.db'}")
    assert not isinstance(ingest_executor(Settings(), on_disk), ThreadIngest)
    assert isinstance(ingest_executor(Settings(ingest_mode="thread"), on_disk), ThreadIngest)
