"""Rule states of a many-rank run: a request reads and writes only its ranks' states (and the non-ok ones)."""

from __future__ import annotations

from monitor.rules.types import RuleState
from monitor.store.database import Database
from monitor.store.migrate import upgrade
from monitor.store.models import Run
from monitor.store.rule_states import load_states, save_states


def test_partial_load_reads_the_ranks_asked_for_plus_every_non_ok_state(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    db = Database(sqlite_url, 1)
    try:
        with db.write_session() as session:
            session.add(Run(run_id="r", config={}))
            session.flush()
            states = {("a", rank): RuleState(rule="a", rank=rank, last_step=1) for rank in range(8)}
            states[("a", 5)].status = "firing"
            save_states(session, "r", states)
        with db.write_session() as session:
            partial = load_states(session, "r", ranks={1, 2})
            assert set(partial) == {("a", 1), ("a", 2), ("a", 5)}
            partial[("a", 1)].last_step = 9
            partial[("b", 1)] = RuleState(rule="b", rank=1)
            save_states(session, "r", partial)
            assert len(load_states(session, "r")) == 9, "a later full load in the same session sees every row"
        with db.read_session() as session:
            everything = load_states(session, "r")
        assert len(everything) == 9 and everything[("a", 1)].last_step == 9
        assert everything[("a", 0)].last_step == 1 and everything[("a", 5)].status == "firing"
    finally:
        db.dispose()
