"""Replay a recorded run under (possibly different) rules: when would rules have fired?

Streaming: batches and epoch summaries are consumed lazily, one at a time, in the order a
live run would deliver them. Batches must come in step order and summaries in epoch
order (anything late is ignored, as in the live engine). The summary of epoch ``e`` is
applied once the batch stream has moved past epoch ``e`` (the first batch of a later
epoch arrives), or at the end of the stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from monitor.rules.engine import RuleEngine, StateKey
from monitor.rules.ruleset import RuleSet
from monitor.rules.types import BatchReading, EpochReading, RuleState, RuleTransition

Span = tuple[int | None, int | None]


@dataclass(frozen=True)
class PausePoint:
    """The first reading after which the decision would have been ``pause``."""

    step: int | None
    epoch: int | None
    rules: tuple[str, ...]


@dataclass
class BacktestResult:
    """Every transition in order, the first pause, and per-rule firing spans.

    ``spans[rule]`` lists ``(start_step, end_step)`` while the rule fired on any rank
    (ranks merged); ``end_step`` is None if it was still firing at the end.
    """

    transitions: list[RuleTransition] = field(default_factory=list)
    first_pause: PausePoint | None = None
    spans: dict[str, list[Span]] = field(default_factory=dict)
    states: dict[StateKey, RuleState] = field(default_factory=dict)
    batches: int = 0
    epochs: int = 0


class _Replay:
    """Incremental bookkeeping of one backtest (O(1) per reading)."""

    def __init__(self, ruleset: RuleSet, start_epoch: int | None) -> None:
        self.start_epoch = start_epoch
        self.engine = RuleEngine(ruleset)
        self.result = BacktestResult()
        self.firing_ranks: dict[str, set[int]] = {}
        self.firing_pause: set[StateKey] = set()
        self.step: int | None = None
        self.epoch: int | None = None

    def batch(self, reading: BatchReading) -> None:
        self.result.batches += 1
        self.step = reading.step if self.step is None else max(self.step, reading.step)
        self._saw_epoch(reading.epoch)
        self._record(self.engine.evaluate_batch(self.result.states, reading))

    def epoch_summary(self, reading: EpochReading) -> None:
        self.result.epochs += 1
        self._saw_epoch(reading.epoch)
        self._record(self.engine.evaluate_epoch(self.result.states, reading, step=self.step))

    def _saw_epoch(self, epoch: int) -> None:
        self.epoch = epoch if self.epoch is None else max(self.epoch, epoch)

    def _record(self, transitions: list[RuleTransition]) -> None:
        for transition in transitions:
            self.result.transitions.append(transition)
            self._track_span(transition)
            key = (transition.rule, transition.rank)
            if transition.kind == "fired" and transition.severity == "pause":
                self.firing_pause.add(key)
            elif transition.kind == "resolved":
                self.firing_pause.discard(key)
        self._check_pause()

    def _track_span(self, transition: RuleTransition) -> None:
        """Open a span when the first rank fires, close it when the last one resolves."""
        ranks = self.firing_ranks.setdefault(transition.rule, set())
        spans = self.result.spans.setdefault(transition.rule, [])
        if transition.kind == "fired":
            if not ranks:
                spans.append((transition.step, None))
            ranks.add(transition.rank)
        elif transition.rank in ranks:
            ranks.discard(transition.rank)
            if not ranks:
                spans[-1] = (spans[-1][0], transition.step)

    def _check_pause(self) -> None:
        """Same gate as :func:`monitor.rules.decision.decide`, kept incrementally."""
        if self.result.first_pause is not None or not self.firing_pause:
            return
        start = self.start_epoch
        if start is not None and self.epoch is not None and self.epoch < start:
            return
        rules = tuple(sorted({rule for rule, _ in self.firing_pause}))
        self.result.first_pause = PausePoint(step=self.step, epoch=self.epoch, rules=rules)


class _Lookahead:
    """One-item lookahead over an iterator, so summaries wait for the batch stream."""

    def __init__(self, items: Iterable[EpochReading]) -> None:
        self._items: Iterator[EpochReading] = iter(items)
        self._next: EpochReading | None = next(self._items, None)

    def pop_before(self, epoch: int | None) -> Iterator[EpochReading]:
        """Yield summaries with epoch < ``epoch`` (all remaining when ``epoch`` is None)."""
        while self._next is not None and (epoch is None or self._next.epoch < epoch):
            item, self._next = self._next, next(self._items, None)
            yield item


_FROM_CONFIG = object()


def backtest(
    ruleset: RuleSet,
    batches: Iterable[BatchReading],
    epochs: Iterable[EpochReading],
    start_epoch: int | None | object = _FROM_CONFIG,
) -> BacktestResult:
    """Replay ``batches`` and ``epochs`` through a fresh engine under ``ruleset``.

    ``start_epoch``: the run's escalation start (the PUT field); by default the config's.
    """
    start = ruleset.escalation_start_epoch if start_epoch is _FROM_CONFIG else start_epoch
    replay = _Replay(ruleset, start)  # type: ignore[arg-type]
    summaries = _Lookahead(epochs)
    for reading in batches:
        for summary in summaries.pop_before(reading.epoch):
            replay.epoch_summary(summary)
        replay.batch(reading)
    for summary in summaries.pop_before(None):
        replay.epoch_summary(summary)
    return replay.result
