"""``GET /escalation/decision`` answered ahead of routing, when nothing about it can go wrong.

Trainers poll this while the process ingests flat out on the same cores. Measured on two
busy cores, FastAPI's way to the handler -- middleware layers, matching the path against
every route, solving dependencies -- cost more than the answer itself and added about
2 ms to the poll's p99 (benchmarks/README.md). This middleware, outermost, serves the
common case: a known token (from the verifier's in-memory cache), exactly one valid
``run_id`` (and no ``epoch``, or the one the stored answer is for), a stored answer.
Anything else -- no token or an unknown one, a bad or missing ``run_id``, another epoch,
an unknown run, a run stored before migration 0003, a database error -- goes on to the
route unchanged, which gives the documented answer or error.
The served request is counted and logged like any other (``record_request``).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qsl

import psycopg
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import HTTPConnection

from monitor.api.deps import presented_token
from monitor.api.escalation import DECISION_PATH, answers_epoch, stored_answer
from monitor.api.request_metrics import record_request
from monitor.metrics import observe_decision
from monitor.schemas.runs import RUN_ID_PATTERN
from monitor.store.runs import RunNotFound
from monitor.store.unavailable import DatabaseUnavailable

Scope = dict[str, Any]
_RUN_ID = re.compile(RUN_ID_PATTERN)
_HEADERS = [(b"content-type", b"application/json")]


_EPOCH = re.compile(r"(0|[1-9][0-9]{0,17})")  # well inside MAX_INDEX; larger ones go to the route


def single_run_id(query_string: bytes) -> str | None:
    """The ``run_id`` when it is the query's only parameter and a valid id, else None."""
    question = poll_question(query_string)
    return question[0] if question is not None and question[1] is None else None


def poll_question(query_string: bytes) -> tuple[str, int | None] | None:
    """``(run_id, epoch or None)`` when the query is exactly a valid run_id and maybe an epoch."""
    try:
        pairs = parse_qsl(query_string.decode("ascii"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    params = dict(pairs)
    run_id, epoch = params.get("run_id"), params.get("epoch")
    if len(pairs) != len(params) or set(params) - {"run_id", "epoch"} or run_id is None:
        return None
    if not _RUN_ID.fullmatch(run_id) or (epoch is not None and not _EPOCH.fullmatch(epoch)):
        return None
    return run_id, None if epoch is None else int(epoch)


class DecisionPoll:
    """Serve well-formed, authorised decision polls from the stored answer; pass on the rest."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != DECISION_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = await self._answer(scope)
        if body is None:
            await self.app(scope, receive, send)
            return
        content = body.encode()
        headers = [*_HEADERS, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        record_request(scope, 200, time.perf_counter() - started, route=DECISION_PATH)

    @staticmethod
    async def _answer(scope: Scope) -> str | None:
        """The stored answer's JSON text, or None when the route should handle the request."""
        question = poll_question(scope.get("query_string", b""))
        state = scope["app"].state
        if question is None or state.verifier.cached_verdict(presented_token(HTTPConnection(scope))) is not True:
            return None
        try:
            answer = await stored_answer(state, question[0])
        except (RunNotFound, SQLAlchemyError, psycopg.Error, DatabaseUnavailable):
            return None
        if answer.body is not None and not answers_epoch(answer.body, question[1]):
            return None  # another epoch: the route decides it
        if answer.body is not None:
            observe_decision(answer.decision)
        return answer.body
