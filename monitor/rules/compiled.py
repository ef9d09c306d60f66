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


@dataclass(frozen=True)
class Source:
    """A reading and its fallbacks, tried in order; the first present one speaks."""

    expressions: tuple[Expression, ...]

    def read(self, reading: Any) -> tuple[int, str, float] | None:
        for index, expression in enumerate(self.expressions):
            value = expression.get(reading)
            if value is not None:
                return index, expression.text, value
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
    digest: str
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

    @property
    def metric(self) -> str:
        """The default metric name (the primary reading's text)."""
        if self.source is not None:
            return self._named(self.source.expressions[0].text)
        if self.conditions:
            return self.conditions[0].source.expressions[0].text
        return "seconds_since_last_record"

    def _named(self, text: str) -> str:
        return text if self.detector_name in ("bound", "spike") else f"{self.detector_name}({text})"

    def observe(self, reading: Any, state: RuleState, step: int | None, epoch: int | None) -> Observation | None:
        """The verdict on one reading (None: no observation, the state stays as it is)."""
        if self.conditions:
            return self._observe_any(reading, state, step, epoch)
        assert self.source is not None and self.reducer is not None
        found = self.source.read(reading)
        if found is None:
            return None
        index, text, value = found
        mem = state.memory
        if mem.get("src", 0) != index:
            mem.pop("r", None)
            mem.pop("d", None)
        if index:
            mem["src"] = index
        else:
            mem.pop("src", None)
        if self.warmup is not None and self.warmup.waiting(value, step, epoch, mem):
            return None
        reduced = self.reducer.push(value, epoch, mem.setdefault("r", {}) if self.reducer.stateful else _SCRATCH)
        if reduced is None:
            return None
        obs = self.detector.observe(reduced[0], reduced[1],
                                    mem.setdefault("d", {}) if self.detector.stateful else _SCRATCH)
        if obs is None:
            return None
        return Observation(obs.value, obs.threshold, obs.breached, self._named(text), obs.excess)

    def _observe_any(self, reading: Any, state: RuleState, step: int | None, epoch: int | None) -> Observation | None:
        seen: list[Observation] = []
        for condition in self.conditions:
            found = condition.source.read(reading)
            if found is None:
                continue
            _, text, value = found
            obs = condition.check.observe(value, epoch, {})
            seen.append(Observation(obs.value, obs.threshold, obs.breached, text, obs.excess))
        if not seen:
            return None
        if self.warmup is not None and self.warmup.waiting(seen[0].value or 0.0, step, epoch, state.memory):
            return None
        if self.pick == "worst":
            return max(seen, key=lambda obs: (obs.breached, _order(obs.excess)))
        return next((obs for obs in seen if obs.breached), seen[0])


def _order(excess: float) -> float:
    return math.inf if math.isnan(excess) else excess
