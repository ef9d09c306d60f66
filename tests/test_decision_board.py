"""The per-process board of stored decision answers: ordering, gaps in listening, big answers."""

from __future__ import annotations

import json
import threading

from monitor.store.decision_board import MAX_PAYLOAD_BYTES, DecisionBoard, StoredAnswer


def _answer(version: int, decision: str = "continue", body: str | None = "{}", run_id: str = "r") -> StoredAnswer:
    return StoredAnswer(run_id, version, decision, body)


def _listening_board() -> DecisionBoard:
    board = DecisionBoard()
    board.listening_started()
    return board


def test_a_board_that_is_not_listening_keeps_nothing() -> None:
    board = DecisionBoard()
    assert board.generation is None
    assert not board.offer(_answer(1))
    assert board.answer("r") is None


def test_only_newer_answers_replace_older_ones() -> None:
    board = _listening_board()
    assert board.offer(_answer(2, "pause"))
    assert not board.offer(_answer(1, "continue"))  # a late notification of an older commit
    assert not board.offer(_answer(2, "continue"))
    assert board.answer("r") == _answer(2, "pause")
    assert board.offer(_answer(3, "continue"))
    assert board.answer("r") == _answer(3, "continue")


def test_an_answer_without_body_hides_older_ones_until_a_read_brings_it() -> None:
    board = _listening_board()
    board.offer(_answer(1))
    assert board.offer(_answer(2, body=None))  # announced too big for NOTIFY
    assert board.answer("r") is None  # so the poll reads the database
    assert not board.offer(_answer(1), board.generation)  # a read that began before that commit
    assert board.offer(_answer(2, body='{"v":2}'), board.generation)
    assert board.answer("r") == _answer(2, body='{"v":2}')


def test_a_read_that_began_before_a_gap_in_listening_is_not_kept() -> None:
    board = _listening_board()
    before = board.generation
    board.offer(_answer(5))
    board.listening_stopped()
    assert board.answer("r") is None  # notifications may be lost from here on
    assert not board.offer(_answer(6))
    board.listening_started()
    assert before is not None and board.generation != before
    assert not board.offer(_answer(4), before)  # read under the old generation: maybe stale
    assert board.offer(_answer(4), board.generation)


def test_payload_round_trip_and_size_limit() -> None:
    small = _answer(7, "pause", '{"decision":"pause"}', run_id="run-1")
    assert StoredAnswer.from_payload(small.to_payload()) == small
    big = _answer(8, "pause", json.dumps({"reasons": ["x" * 100] * 100}))
    payload = big.to_payload()
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    assert StoredAnswer.from_payload(payload) == _answer(8, "pause", None)


def test_concurrent_offers_end_at_the_newest() -> None:
    board = _listening_board()
    versions = list(range(1, 2001))

    def offer(part: list[int]) -> None:
        for version in part:
            board.offer(_answer(version))

    threads = [threading.Thread(target=offer, args=(versions[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = board.answer("r")
    assert found is not None and found.version == 2000
