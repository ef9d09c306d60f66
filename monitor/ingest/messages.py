"""What a server process and its ingest worker say to each other, in order.

server -> worker: the settings (a dict), then ``Job`` after ``Job``.
worker -> server: ``Ready`` once it can work, then one ``Reply`` per job, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.ingest.failures import WorkFailure
from monitor.metrics import CountIncrement
from monitor.store.decision_board import StoredAnswer


@dataclass(frozen=True)
class Job:
    """Call ``work(db, settings, *args)``; ``work`` is a module-level function (pickled by name)."""

    work: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Ready:
    """The worker imported everything and opened its database."""

    pid: int


@dataclass(frozen=True)
class Reply:
    """A job's outcome, and what the server process must apply of it.

    ``answers``: decision answers the job's transactions committed (offered to the server
    process's board before the request is answered). ``counts``: metric increments.
    """

    result: Any = None
    failure: WorkFailure | None = None
    answers: list[StoredAnswer] = field(default_factory=list)
    counts: list[CountIncrement] = field(default_factory=list)
