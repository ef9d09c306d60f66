"""Runs a run's compiled rules over one reading at a time, updating per-(rule, rank) states in place.

Incremental by design: each reading costs O(number of rules) and never rescans history;
whatever a rule needs from the past lives in its bounded ``state.memory``.

Ordering: a batch reading whose (segment, step) is <= the state's (``last_segment``,
``last_step``) (an epoch reading whose epoch is <= ``last_epoch``) is late or a duplicate
and is ignored for that (rule, rank), so retries and out-of-order deliveries cannot move a
rule backwards, while a resumed process's rewound steps (a new segment) are evaluated.
The cursor advances even when the reading lacks the rule's metric.

A state whose digest differs from its rule's (the definition or a resolved param changed)
starts over; a firing one resolves with a note saying why.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from monitor.rules.compiled import CompiledRule
from monitor.rules.detectors import Observation
from monitor.rules.ruleset import RuleSet
from monitor.rules.state_machine import advance
from monitor.rules.types import BatchReading, EpochReading, RuleState, RuleTransition

StateKey = tuple[str, int]
States = MutableMapping[StateKey, RuleState]


def state_for(states: States, rule: str, rank: int, digest: str | None = None) -> RuleState:
    """The state of (rule, rank), created 'ok' on first use."""
    key = (rule, rank)
    state = states.get(key)
    if state is None:
        state = states[key] = RuleState(rule=rule, rank=rank, definition_id=digest)
    return state


class RuleEngine:
    """Evaluates readings against one run's rule set; holds no state of its own."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.batch_rules = tuple(r for r in ruleset.rules if r.kind == "batch")
        self.epoch_rules = tuple(r for r in ruleset.rules if r.kind == "epoch")
        self.stale_rules = tuple(r for r in ruleset.rules if r.kind == "stale")

    def evaluate_batch(self, states: States, reading: BatchReading, now: float | None = None) -> list[RuleTransition]:
        """Apply one batch reading of one rank to every batch rule.

        ``now`` (server time) feeds the stale-stream rules; a caller with many readings of a
        rank at once passes it with the rank's last one only (the stream is alive either way).
        """
        transitions: list[RuleTransition] = []
        step, epoch, rank = reading.step, reading.epoch, reading.rank
        for rule in self.batch_rules:
            state = states.get((rule.name, rank))
            if state is None or state.definition_id != rule.definition_id:
                state = self._state(states, rule, rank, transitions)
            cursor = (reading.segment, step)
            if state.last_step is not None and cursor <= (state.last_segment, state.last_step):
                continue
            state.last_segment, state.last_step = cursor
            obs = rule.observe(reading, state, step, epoch)
            if obs is None:
                continue
            if not obs.breached and state.status == "ok":  # the common case, inline: healthy, nothing to count
                state.value, state.threshold = obs.value, obs.threshold
                memory = state.memory
                if memory.get("metric") != obs.metric:
                    memory["metric"] = obs.metric
            else:
                self._apply(rule, state, obs, step, epoch, transitions)
        if now is not None:
            for rule in self.stale_rules:
                self._seen(states, rule, reading, now, transitions)
        return transitions

    def evaluate_epoch(self, states: States, reading: EpochReading, step: int | None = None) -> list[RuleTransition]:
        """Apply one closed epoch of one rank; ``step`` (if known) is where the epoch closed."""
        transitions: list[RuleTransition] = []
        for rule in self.epoch_rules:
            state = self._state(states, rule, reading.rank, transitions)
            if state.last_epoch is not None and reading.epoch <= state.last_epoch:
                continue
            state.last_epoch = reading.epoch
            obs = rule.observe(reading, state, step, reading.epoch)
            self._apply(rule, state, obs, step, reading.epoch, transitions)
        return transitions

    def sweep(self, states: States, now: float) -> list[RuleTransition]:
        """Time sweep of the stale-stream rules: a rank silent for too long breaches."""
        transitions: list[RuleTransition] = []
        for rule in self.stale_rules:
            for (name, _rank), state in list(states.items()):
                seen = state.memory.get("seen")
                if name != rule.name or seen is None or state.definition_id != rule.definition_id:
                    continue
                silent = now - seen
                assert rule.stale_seconds is not None
                obs = Observation(silent, rule.stale_seconds, silent > rule.stale_seconds, rule.metric)
                if obs.breached:
                    self._apply(rule, state, obs, state.last_step, state.last_epoch, transitions)
        return transitions

    def _seen(self, states: States, rule: CompiledRule, reading: BatchReading, now: float,
              transitions: list[RuleTransition]) -> None:
        """A record arrived: the stream is alive (healthy observation), remember when."""
        state = self._state(states, rule, reading.rank, transitions)
        if state.last_step is not None and reading.step <= state.last_step:
            return
        state.last_step, state.last_epoch = reading.step, reading.epoch
        silent = max(now - state.memory.get("seen", now), 0.0)
        state.memory["seen"] = now
        obs = Observation(silent, rule.stale_seconds, False, rule.metric)
        if state.status != "ok":
            self._apply(rule, state, obs, reading.step, reading.epoch, transitions)

    def _state(self, states: States, rule: CompiledRule, rank: int, transitions: list[RuleTransition]) -> RuleState:
        """The (rule, rank) state, reset first when the rule's definition changed."""
        state = state_for(states, rule.name, rank, rule.definition_id)
        if state.definition_id == rule.definition_id:
            return state
        if state.definition_id is None:  # a state from before digests (migration 0007): adopt it
            state.definition_id = rule.definition_id
            return state
        fresh = RuleState(rule=rule.name, rank=rank, definition_id=rule.definition_id, last_step=state.last_step,
                          last_epoch=state.last_epoch, memory={"note": "definition or params changed: state reset"})
        if state.status == "firing":
            transitions.append(RuleTransition(rule.name, rank, "resolved", rule.severity, rule.metric, state.value,
                                              state.threshold, state.last_step, state.last_epoch,
                                              note="definition or params changed: state reset"))
        states[(rule.name, rank)] = fresh
        return fresh

    @staticmethod
    def _apply(rule: CompiledRule, state: RuleState, obs: Observation | None, step: int | None, epoch: int | None,
               transitions: list[RuleTransition]) -> None:
        """Run the shared state machine; remember which metric spoke."""
        if obs is None:
            return
        memory = state.memory
        if memory.get("metric") != obs.metric:
            memory["metric"] = obs.metric or rule.metric
        if not obs.breached and state.status == "ok":  # the common case: healthy and nothing to count
            state.value, state.threshold = obs.value, obs.threshold
            return
        transition = advance(state, obs, span=rule.span, severity=rule.severity, metric=rule.metric,
                             step=step, epoch=epoch)
        if transition is not None:
            transitions.append(transition)
