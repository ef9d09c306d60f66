"""Each process's copy of the runs' stored decision answers, kept current by PostgreSQL.

The decision poll is the one request a trainer waits on, and on PostgreSQL even a
primary-key read costs a round trip whose reply must then win the GIL back from the
ingest thread: under flat-out ingestion that was most of the poll's tail latency. So every
transaction that rewrites a run's answer (``monitor.evaluation``) also sends it with
``NOTIFY`` on ``CHANNEL``; PostgreSQL delivers it at commit to every listening process
(``monitor.store.decision_listener``), and the committing process offers it to its own
board right after the commit, so its next poll already sees it.

Answers carry the run's ``decision_version`` (bumped under the run's row lock), and a
board only ever moves a run forward. While a process is not listening (SQLite, before the
first ``LISTEN``, after the connection dropped) its board is empty and refuses offers:
every poll reads the database, as it always could. A fill after a read is accepted only
if the board kept listening, without a gap, since before the read began.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

CHANNEL = "monitor_decisions"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; a larger answer is announced
# without its body, which makes every board read that run from the database again.
MAX_PAYLOAD_BYTES = 7900
_STAGED = "monitor.staged_answers"  # key in Session.info


@dataclass(frozen=True)
class StoredAnswer:
    """One run's decision answer as a transaction stored it (``body`` None: not carried)."""

    run_id: str
    version: int
    decision: str
    body: str | None

    def to_payload(self) -> str:
        payload = json.dumps(asdict(self), separators=(",", ":"))
        if len(payload.encode()) <= MAX_PAYLOAD_BYTES:
            return payload
        return json.dumps(asdict(self) | {"body": None}, separators=(",", ":"))

    @classmethod
    def from_payload(cls, payload: str) -> StoredAnswer:
        data = json.loads(payload)
        return cls(str(data["run_id"]), int(data["version"]), str(data["decision"]), data.get("body"))

    def supersedes(self, other: StoredAnswer | None) -> bool:
        """Newer than ``other``, or the same version with the body ``other`` lacked."""
        if other is None or self.version > other.version:
            return True
        return self.version == other.version and other.body is None and self.body is not None


class DecisionBoard:
    """Stored answers by run id; thread-safe (offers come from ingest threads and the event loop)."""

    def __init__(self) -> None:
        self._answers: dict[str, StoredAnswer] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._listening = False

    def answer(self, run_id: str) -> StoredAnswer | None:
        """The run's current answer, or None when the database must be asked."""
        found = self._answers.get(run_id)
        return found if found is not None and found.body is not None else None

    @property
    def generation(self) -> int | None:
        """Token for ``offer`` after a database read: None while not listening."""
        return self._generation if self._listening else None

    def offer(self, answer: StoredAnswer, generation: int | None = None) -> bool:
        """Keep ``answer`` if it is newer; ``generation``: the read began under that token."""
        with self._lock:
            if not self._listening or (generation is not None and generation != self._generation):
                return False
            if not answer.supersedes(self._answers.get(answer.run_id)):
                return False
            self._answers[answer.run_id] = answer
            return True

    def listening_started(self) -> None:
        """``LISTEN`` is in effect: from now on every committed answer will arrive."""
        self._reset(listening=True)

    def listening_stopped(self) -> None:
        """Notifications may be missed from now on: forget everything."""
        self._reset(listening=False)

    def _reset(self, *, listening: bool) -> None:
        with self._lock:
            self._answers.clear()
            self._generation += 1
            self._listening = listening


class CommittedAnswers(DecisionBoard):
    """An ingest worker process's board: it serves no polls, it keeps every answer its
    commits offered, for the server process to offer to its own board
    (``monitor.ingest.process_pool``), so the trainer's next poll sees its own write."""

    def __init__(self) -> None:
        super().__init__()
        self._committed: list[StoredAnswer] = []

    def offer(self, answer: StoredAnswer, generation: int | None = None) -> bool:
        self._committed.append(answer)
        return True

    def take(self) -> list[StoredAnswer]:
        """The answers committed since the last call."""
        taken, self._committed = self._committed, []
        return taken


def stage(session: Session, answer: StoredAnswer) -> None:
    """Announce ``answer`` at the commit of ``session``'s transaction (and to this process after it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CHANNEL, answer.to_payload())))
    session.info.setdefault(_STAGED, []).append(answer)


def take_staged(session: Session) -> list[StoredAnswer]:
    """The answers ``session``'s committed transaction stored (each handed out once)."""
    return session.info.pop(_STAGED, [])
