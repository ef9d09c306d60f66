"""An ingest worker process: ``python -m monitor.ingest.child``, started by its server process.

It reads jobs from stdin and writes replies to stdout (``monitor.ingest.messages``), one
job at a time, until stdin ends, when the server process closes it at shutdown; a job
it is in the middle of then still finishes, its transaction committing or rolling back
as one. If the server process dies instead (even by SIGKILL), the kernel kills this
worker with it (``monitor.lifeline``): the job's transaction rolls back as one, its
request failed with the server process anyway, and the retry is safe. It runs in a
session of its own, so a Ctrl-C or a signal to the server's process group reaches the
server, which then closes the pipe. Anything printed to stdout by mistake goes to
stderr (the server's log), never into the frames.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import IO

from monitor.gc_tuning import tune_gc
from monitor.ingest.failures import describe
from monitor.ingest.frames import read_frame, write_frame
from monitor.ingest.messages import Job, Ready, Reply
from monitor.lifeline import SERVER_PID_ENV, die_with_parent, parent_from_env
from monitor.logging_setup import configure_logging
from monitor.metrics import defer_counts, take_deferred_counts
from monitor.settings import Settings
from monitor.store.database import Database
from monitor.store.decision_board import CommittedAnswers

def claim_pipes() -> tuple[IO[bytes], IO[bytes]]:
    """The frame streams, taken off fds 0 and 1; fd 1 then points at stderr, fd 0 at /dev/null."""
    frames_in = os.fdopen(os.dup(0), "rb")
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return frames_in, frames_out


def handle(job: Job, db: Database, settings: Settings, answers: CommittedAnswers) -> Reply:
    """Run one job; every error becomes part of the reply."""
    try:
        result, failure = job.work(db, settings, *job.args), None
    except Exception as exc:  # noqa: BLE001 - the server process answers for it
        result, failure = None, describe(exc)
    return Reply(result, failure, answers.take(), take_deferred_counts())


def serve(frames_in: IO[bytes], frames_out: IO[bytes]) -> None:
    """Set up from the settings frame, announce readiness, then answer jobs until stdin ends."""
    given = read_frame(frames_in)
    if given is None:  # the server process went away before it sent anything
        return
    settings = Settings(**given)
    configure_logging(settings.log_level, settings.log_json)
    defer_counts()
    db = Database(settings.database_url, settings.db_pool_size)
    answers = db.decisions = CommittedAnswers()
    tune_gc(settings.gc_gen0_threshold)
    write_frame(frames_out, Ready(os.getpid()))
    try:
        while (job := read_frame(frames_in)) is not None:
            write_frame(frames_out, handle(job, db, settings, answers))
    finally:
        db.dispose()


def main() -> int:
    server = parent_from_env(SERVER_PID_ENV)
    if server is not None:  # killed with its server process, whatever kills that
        die_with_parent(server, signal.SIGKILL)
    frames_in, frames_out = claim_pipes()
    try:
        serve(frames_in, frames_out)
    except (BrokenPipeError, EOFError):
        # The server process is gone: nobody to answer. Exit without flushing the reply
        # still buffered for it (that would only fail again, noisily, at exit).
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
