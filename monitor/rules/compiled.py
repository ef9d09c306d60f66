"""A rule from the rules file, compiled: reading -> warm-up -> reduce -> detector -> observation.

Compiled once per run config (see :mod:`monitor.rules.ruleset`), so judging a reading is
a few closure calls. Working state lives in ``state.memory`` under short keys: ``src``
(which of reading/fallbacks spoke last), ``r`` (reducer), ``d`` (detector), ``armed``.
When the source switches (a record gains or loses ``extra.hyperlora_delta_scale``),
reducer and detector memory restart: a ratio and a raw norm must not share a baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from monitor.rules.detectors import BoundCheck, Observation
from monitor.rules.expressions import Expression
from monitor.rules.reducers import Reducer
from monitor.rules.state_machine import Span
from monitor.rules.types import RuleState, Severity

RuleKind = Literal["batch", "epoch", "stale"]
_SCRATCH: dict[str, Any] = {}  # memory for stateless stages (never written)


class Source:
    """A reading and its fallbacks, tried in order; the first present one speaks."""

    __slots__ = ("expressions", "getters")

    def __init__(self, expressions: tuple[Expression, ...]) -> None:
        self.expressions = expressions
        self.getters = tuple(e.get for e in expressions)

    def read(self, reading: Any) -> tuple[int, float] | None:
        """(index of the expression that spoke, its value), or None when none is present."""
        for index, get in enumerate(self.getters):
            value = get(reading)
            if value is not None:
                return index, value
        return None


@dataclass(frozen=True)
class Condition:
    """One bound of an ``any:`` rule."""

    source: Source
    check: BoundCheck


@dataclass(frozen=True)
class Warmup:
    """Observations before ``steps``/``epochs``, or until the reading first reaches a level, are ignored."""

    steps: int | None = None
    epochs: int | None = None
    level: float | None = None

    def waiting(self, value: float, step: int | None, epoch: int | None, mem: dict[str, Any]) -> bool:
        if self.steps is not None:
            return step is not None and step < self.steps
        if self.epochs is not None:
            return epoch is not None and epoch < self.epochs
        if self.level is None or mem.get("armed"):
            return False
        side = mem.setdefault("side", "up" if value < self.level else "down")
        reached = value >= self.level if side == "up" else value <= self.level
        if reached:
            mem["armed"] = True
            mem.pop("side", None)
        return not reached


@dataclass(frozen=True)
class CompiledRule:
    """Everything the engine needs of one rule; ``digest`` identifies definition + params."""

    name: str
    kind: RuleKind
    severity: Severity
    span: Span
    definition_id: str
    metric: str = ""
    names: tuple[str, ...] = ()
    source: Source | None = None
    reducer: Reducer | None = None
    detector: Any = None
    detector_name: str = "bound"
    conditions: tuple[Condition, ...] = ()
    pick: str = "first"
    warmup: Warmup | None = None
    stale_seconds: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    actions: tuple[dict[str, Any], ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Most rules are a bound on a reading: no memory, no warm-up. They skip the general path.
        stateless = (self.source is not None and self.warmup is None and not self.reducer.stateful  # type: ignore
                     and not self.detector.stateful)
        if stateless and len(self.source.getters) == 1:  # type: ignore[union-attr]
            object.__setattr__(self, "observe", self._observe_single)
        elif stateless:
            object.__setattr__(self, "observe", self._observe_stateless)
        elif self.conditions:
            object.__setattr__(self, "observe", self._observe_any)

    def _observe_single(self, reading: Any, state: RuleState, step: int | None, epoch: int | None) -> Observation | None:
        value = self.source.getters[0](reading)  # type: ignore[union-attr]
        if value is None:
            return None
        return self.detector.observe(value, epoch, _SCRATCH, self.metric)

    def _observe_stateless(self, reading: Any, state: RuleState, step: int | None,
                           epoch: int | None) -> Observation | None:
        found = self.source.read(reading)  # type: ignore[union-attr]
        if found is None:
            return None
        return self.detector.observe(found[1], epoch, _SCRATCH, self.names[found[0]])

    def observe(self, reading: Any, state: RuleState, step: int | None, epoch: int | None) -> Observation | None:
        """The verdict on one reading (None: no observation, the state stays as it is)."""
        if self.conditions:
            return self._observe_any(reading, state, step, epoch)
        found = self.source.read(reading)  # type: ignore[union-attr]
        if found is None:
            return None
        index, value = found
        mem = state.memory
        if mem.get("src", 0) != index:  # the reading switched to or from a fallback: restart baselines
            mem.pop("r", None)
            mem.pop("d", None)
            if index:
                mem["src"] = index
            else:
                del mem["src"]
        if self.warmup is not None and self.warmup.waiting(value, step, epoch, mem):
            return None
        reducer, detector = self.reducer, self.detector
        if reducer.stateful:  # type: ignore[union-attr]
            reduced = reducer.push(value, epoch, mem.setdefault("r", {}))  # type: ignore[union-attr]
            if reduced is None:
                return None
            value, epoch = reduced
        return detector.observe(value, epoch, mem.setdefault("d", {}) if detector.stateful else _SCRATCH,
                                self.names[index])

    def _observe_any(self, reading: Any, state: RuleState, step: int | None, epoch: int | None) -> Observation | None:
        first: Observation | None = None
        worst: Observation | None = None
        pick_first = self.pick == "first"
        for condition in self.conditions:
            source = condition.source
            for index, get in enumerate(source.getters):
                value = get(reading)
                if value is not None:
                    break
            else:
                continue
            obs = condition.check.observe(value, epoch, _SCRATCH, source.expressions[index].text)
            if first is None:
                first = worst = obs
            if obs.breached and pick_first:
                worst = obs
                break
            if (obs.breached, _order(obs.excess)) > (worst.breached, _order(worst.excess)):  # type: ignore
                worst = obs
        if first is None:
            return None
        if self.warmup is not None and self.warmup.waiting(first.value or 0.0, step, epoch, state.memory):
            return None
        if pick_first:
            return worst if worst.breached else first  # type: ignore[union-attr]
        return worst


def _order(excess: float) -> float:
    return math.inf if math.isnan(excess) else excess
