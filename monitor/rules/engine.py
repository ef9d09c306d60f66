"""Runs every rule over one reading at a time, updating per-(rule, rank) states in place.

Incremental by design: each reading costs O(number of rules) and never rescans history;
whatever a rule needs from the past lives in its bounded ``state.memory``.

Ordering: a batch reading whose (segment, step) is <= the state's (``last_segment``,
``last_step``) (an epoch reading whose epoch is <= ``last_epoch``) is late or a duplicate
and is ignored for that (rule, rank), so retries and out-of-order deliveries cannot move a
rule backwards, while a resumed process's rewound steps (a new segment) are evaluated.
The cursor advances even when the reading lacks the rule's metric.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

from monitor.rules.accuracy import AccuracyDropRule
from monitor.rules.attention import AttentionCollapseRule, AttentionWeakRule
from monitor.rules.gates import GradExplosionRule, NanStreakRule
from monitor.rules.logits import LogitRangeRule
from monitor.rules.lora import LoraGrowthRule, LoraNormRule
from monitor.rules.state_machine import Observation, Rule, advance
from monitor.rules.stop_predictor import StopSaturationRule
from monitor.rules.thresholds import Thresholds
from monitor.rules.types import BatchReading, EpochReading, RuleState, RuleTransition

StateKey = tuple[str, int]
States = MutableMapping[StateKey, RuleState]

RULES: tuple[Rule, ...] = (
    LoraNormRule(),
    LoraGrowthRule(),
    StopSaturationRule(),
    AttentionWeakRule(),
    AttentionCollapseRule(),
    LogitRangeRule(),
    AccuracyDropRule(),
    NanStreakRule(),
    GradExplosionRule(),
)
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}


def state_for(states: States, rule: str, rank: int) -> RuleState:
    """The state of (rule, rank), created 'ok' on first use."""
    key = (rule, rank)
    state = states.get(key)
    if state is None:
        state = states[key] = RuleState(rule=rule, rank=rank)
    return state


class RuleEngine:
    """Evaluates readings against one run's thresholds; holds no state of its own."""

    def __init__(self, thresholds: Thresholds, rules: Sequence[Rule] = RULES) -> None:
        self.thresholds = thresholds
        self.batch_rules = tuple(rule for rule in rules if rule.kind == "batch")
        self.epoch_rules = tuple(rule for rule in rules if rule.kind == "epoch")
        # Spans and severities depend only on the thresholds: resolve them once, not per reading.
        self._spans = {rule.name: rule.span(thresholds) for rule in rules}
        self._severities = {rule.name: rule.severity(thresholds) for rule in rules}

    def evaluate_batch(self, states: States, reading: BatchReading) -> list[RuleTransition]:
        """Apply one batch reading of one rank to every batch rule."""
        transitions = []
        for rule in self.batch_rules:
            state = state_for(states, rule.name, reading.rank)
            cursor = (reading.segment, reading.step)
            if state.last_step is not None and cursor <= (state.last_segment, state.last_step):
                continue
            state.last_segment, state.last_step = cursor
            obs = rule.observe(reading, state, self.thresholds)
            transition = self._apply(rule, state, obs, reading.step, reading.epoch)
            if transition is not None:
                transitions.append(transition)
        return transitions

    def evaluate_epoch(
        self, states: States, reading: EpochReading, step: int | None = None
    ) -> list[RuleTransition]:
        """Apply one closed epoch of one rank; ``step`` (if known) is where the epoch closed."""
        transitions = []
        for rule in self.epoch_rules:
            state = state_for(states, rule.name, reading.rank)
            if state.last_epoch is not None and reading.epoch <= state.last_epoch:
                continue
            state.last_epoch = reading.epoch
            obs = rule.observe(reading, state, self.thresholds)
            transition = self._apply(rule, state, obs, step, reading.epoch)
            if transition is not None:
                transitions.append(transition)
        return transitions

    def _apply(
        self, rule: Rule, state: RuleState, obs: Observation | None, step: int | None, epoch: int
    ) -> RuleTransition | None:
        """Run the shared state machine; remember which metric spoke when it is not the default."""
        if obs is not None:
            if obs.metric and obs.metric != rule.metric:
                state.memory["metric"] = obs.metric
            else:
                state.memory.pop("metric", None)
        return advance(
            state,
            obs,
            span=self._spans[rule.name],
            severity=self._severities[rule.name],
            metric=rule.metric,
            step=step,
            epoch=epoch,
        )
