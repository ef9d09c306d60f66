"""Compile one validated :class:`RuleSpec` against resolved params into a :class:`CompiledRule`.

Every problem is a ``{type, loc, msg}`` entry located from the rule's own position
(``loc_prefix``, e.g. ``["monitor", "rules", 0]``), so the API and the CLI name the field.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from monitor.rules.compiled import CompiledRule, Condition, Source, Warmup
from monitor.rules.detectors import BoundCheck, DropCheck, GrowthCheck, SpikeCheck
from monitor.rules.errors import problem
from monitor.rules.expressions import ExpressionError, compile_expression
from monitor.rules.params import ParamValue
from monitor.rules.reducers import check_reducer, make_reducer
from monitor.rules.spec import ParamRef, RuleSpec
from monitor.rules.state_machine import Span

Loc = list[str | int]


class _Compiler:
    """Holds the params and collects errors while one rule compiles."""

    def __init__(self, params: dict[str, ParamValue], loc: Loc) -> None:
        self.params, self.loc = params, loc
        self.errors: list[dict[str, Any]] = []
        self.used: dict[str, Any] = {}

    def fail(self, where: Loc, kind: str, msg: str) -> None:
        self.errors.append(problem([*self.loc, *where], kind, msg))

    def threshold(self, bound: Any, where: Loc):
        """A bound (number or param ref) as a function of the epoch."""
        if not isinstance(bound, ParamRef):
            value = float(bound)
            return lambda epoch: value
        value = self.params.get(bound.param)
        if value is None or value.value is None or isinstance(value.value, bool):
            self.fail([*where, "param"], "unknown_param", "names no numeric param with a value")
            return lambda epoch: 0.0
        self.used[bound.param] = [value.value, list(value.phases)]
        scale = bound.scale
        if not value.phases:
            fixed = float(value.value) * scale
            return lambda epoch: fixed
        return lambda epoch: float(value.at(epoch)) * scale

    def fixed(self, bound: Any) -> float | None:
        """The bound as a constant when it cannot change with the epoch (no phases), else None."""
        if not isinstance(bound, ParamRef):
            return float(bound)
        value = self.params.get(bound.param)
        if value is None or value.phases or value.value is None or isinstance(value.value, bool):
            return None
        return float(value.value) * bound.scale

    def count(self, item: Any, where: Loc) -> int:
        number = self.threshold(item, where)(None)
        if number < 0 or not float(number).is_integer():
            self.fail(where, "int_type", "must be a whole number >= 0")
        return int(number)

    def source(self, reading: str, fallback: list[str], where: Loc) -> Source | None:
        expressions = []
        for index, text in enumerate([reading, *fallback]):
            try:
                expressions.append(compile_expression(text))
            except ExpressionError as exc:
                self.fail(where if index == 0 else ["fallback", index - 1], "expression", str(exc))
        kinds = {e.kind for e in expressions}
        if len(kinds) > 1:
            self.fail(["fallback"], "expression", "reading and fallbacks mix batch and epoch readings")
        return Source(tuple(expressions)) if expressions and len(kinds) == 1 else None


def compile_rule(spec: RuleSpec, params: dict[str, ParamValue], loc: Loc) -> tuple[CompiledRule | None, list]:
    """The compiled rule (None if disabled or broken) and the errors found."""
    c = _Compiler(params, loc)
    span = Span(max(c.count(spec.for_, ["for"]), 1), max(c.count(spec.resolve, ["resolve"]), 1),
                c.count(spec.keep_firing_for, ["keep_firing_for"]))
    parts: dict[str, Any] = {}
    if spec.stale is not None:
        kind = "stale"
        parts["stale_seconds"] = c.threshold(spec.stale.seconds, ["stale", "seconds"])(None)
        parts["detector_name"] = "stale"
    elif spec.any is not None and len(spec.any) == 1 and spec.warmup is None:
        kind = _compile_single_condition(c, spec, parts)  # same verdicts, the cheaper stateless path
    elif spec.any is not None:
        kind = _compile_any(c, spec, parts)
    else:
        kind = _compile_single(c, spec, parts)
    warmup = _warmup(c, spec, kind)
    dump = spec.model_dump(by_alias=True, mode="json")
    digest = hashlib.sha256(json.dumps([dump, c.used], sort_keys=True, default=str).encode()).hexdigest()[:16]
    if c.errors or not spec.enabled:
        return None, c.errors
    actions = tuple({"action": a} if isinstance(a, str) else a.model_dump(exclude_none=True) for a in spec.actions)
    rule = CompiledRule(name=spec.name, kind=kind, severity=spec.severity, span=span, definition_id=digest, warmup=warmup,
                        labels=dict(spec.labels), annotations=dict(spec.annotations), actions=actions,
                        spec=dump, metric=_metric_names(parts)[0], names=_metric_names(parts), **parts)
    return rule, []


def _metric_names(parts: dict[str, Any]) -> tuple[str, ...]:
    """What events call each of the rule's readings: the expression, wrapped in the measure for growth/drop."""
    if parts.get("source") is not None:
        detector = parts["detector_name"]
        texts = [e.text for e in parts["source"].expressions]
        return tuple(t if detector in ("bound", "spike") else f"{detector}({t})" for t in texts)
    if parts.get("conditions"):
        return (parts["conditions"][0].source.expressions[0].text,)
    return ("seconds_since_last_record",)


def _compile_any(c: _Compiler, spec: RuleSpec, parts: dict[str, Any]) -> str:
    conditions, kinds = [], set()
    for index, cond in enumerate(spec.any or []):
        where: Loc = ["any", index]
        source = c.source(cond.reading, cond.fallback, [*where, "reading"])
        check = _bound(c, cond.above, cond.below, cond.outside, cond.inclusive, where)
        if source is not None:
            conditions.append(Condition(source, check))
            kinds.add(source.expressions[0].kind)
    if len(kinds) > 1:
        c.fail(["any"], "expression", "conditions mix batch and epoch readings")
    parts.update(conditions=tuple(conditions), pick=spec.pick)
    return kinds.pop() if len(kinds) == 1 else "batch"


def _compile_single_condition(c: _Compiler, spec: RuleSpec, parts: dict[str, Any]) -> str:
    """``any:`` of one condition is a bound rule on that condition's reading."""
    (cond,) = spec.any or []
    source = c.source(cond.reading, cond.fallback, ["any", 0, "reading"])
    check = _bound(c, cond.above, cond.below, cond.outside, cond.inclusive, ["any", 0])
    parts.update(source=source, reducer=make_reducer(None), detector=check, detector_name="bound")
    return source.expressions[0].kind if source else "batch"


def _compile_single(c: _Compiler, spec: RuleSpec, parts: dict[str, Any]) -> str:
    assert spec.reading is not None
    source = c.source(spec.reading, spec.fallback, ["reading"])
    kind = source.expressions[0].kind if source else "batch"
    arg = None
    if isinstance(spec.reduce, dict) and len(spec.reduce) == 1:
        (name, raw), = spec.reduce.items()
        arg = c.threshold(raw, ["reduce", name])(None)
    reason = check_reducer(spec.reduce, arg)
    if reason:
        c.fail(["reduce"], "reduce", reason)
    if spec.growth is not None:
        window = None if spec.growth.window_epochs is None else max(c.count(spec.growth.window_epochs,
                                                                              ["growth", "window_epochs"]), 1)
        if window is not None and kind == "batch" and not isinstance(spec.reduce, str):
            c.fail(["growth", "window_epochs"], "growth",
                   "a window in epochs needs an epoch reading or reduce epoch_mean/epoch_max/epoch_min")
        detector, name = GrowthCheck(c.threshold(spec.growth.ratio, ["growth", "ratio"]), window), "growth"
    elif spec.drop is not None:
        detector, name = DropCheck(c.threshold(spec.drop.from_best, ["drop", "from_best"])), "drop"
    elif spec.spike is not None:
        s = spec.spike
        detector = SpikeCheck(s.sigma, s.window, s.min_samples or min(s.window, 32), s.factor)
        name = "spike"
    else:
        detector, name = _bound(c, spec.above, spec.below, spec.outside, spec.inclusive, []), "bound"
    parts.update(source=source, reducer=make_reducer(spec.reduce, arg), detector=detector, detector_name=name)
    return kind


def _bound(c: _Compiler, above: Any, below: Any, outside: Any, inclusive: bool, where: Loc) -> BoundCheck:
    high_at: Loc = [*where, "above"]
    low_at: Loc = [*where, "below"]
    if outside is not None:
        (low, high), high_at, low_at = outside, [*where, "outside", 1], [*where, "outside", 0]
    else:
        low, high = below, above
    return BoundCheck(None if high is None else c.threshold(high, high_at),
                      None if low is None else c.threshold(low, low_at), inclusive,
                      None if high is None else c.fixed(high), None if low is None else c.fixed(low))


def _warmup(c: _Compiler, spec: RuleSpec, kind: str) -> Warmup | None:
    w = spec.warmup
    if w is None:
        return None
    if w.steps is not None:
        if kind != "batch":
            c.fail(["warmup", "steps"], "warmup", "a warm-up in steps needs a batch reading; use epochs")
        return Warmup(steps=c.count(w.steps, ["warmup", "steps"]))
    if w.epochs is not None:
        return Warmup(epochs=c.count(w.epochs, ["warmup", "epochs"]))
    return Warmup(level=w.until_reading_reaches)
