"""Rule unit tests, the way ``promtool test rules`` runs them: input series in, expected states out.

A test file names rule files (default: the shipped checklist), an optional trainer config,
and tests. Each test gives ``input_series`` (a batch reading, ``extra.NAME``, or an epoch
reading ``epoch.NAME``/``epoch.extra.NAME``) with values in promtool's expanding notation
(``'1+0.5x4'`` is ``1 1.5 2 2.5 3``; ``_`` is a missing value, ``_x3`` three of them) and the
``expected`` status of rules at given steps or epochs. Batches run through the real engine,
one per step; epoch ``e``'s summary is applied when the batches move past epoch ``e``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from monitor.rules.engine import RuleEngine
from monitor.rules.errors import RuleError, from_validation, problem
from monitor.rules.expressions import BATCH_READINGS, EPOCH_READINGS
from monitor.rules.ruleset import RuleSet, build, load_rules_text, shipped
from monitor.rules.spec import RulesFile, Strict
from monitor.rules.types import BatchReading, EpochReading

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+|NaN|Inf)"
_REPEAT = re.compile(rf"^(?P<a>{_NUMBER})(?:(?P<op>[-+])(?P<b>{_NUMBER}))?x(?P<n>\d+)$")


def expand(values: str) -> list[float | None]:
    """promtool's series notation: ``a+bxn`` -> a, a+b, ..., a+n*b; ``_`` missing; ``_xn`` n missing."""
    out: list[float | None] = []
    for item in values.split():
        if item == "_":
            out.append(None)
        elif item.startswith("_x") and item[2:].isdigit():
            out.extend([None] * int(item[2:]))
        elif match := _REPEAT.match(item):
            start, step = float(match["a"]), float(match["b"] or 0) * (-1 if match["op"] == "-" else 1)
            out.extend(start + index * step for index in range(int(match["n"]) + 1))
        else:
            try:
                out.append(float(item))
            except ValueError:
                raise ValueError(f"not a value or a+bxn: {item[:40]}") from None
    return out


class Series(Strict):
    series: Annotated[str, Field(min_length=1, max_length=200)]
    values: Annotated[str, Field(max_length=100_000)]
    rank: int = Field(default=0, ge=0)


class Expect(Strict):
    rule: str
    status: Literal["ok", "pending", "firing"]
    at_step: int | None = Field(default=None, ge=0)
    at_epoch: int | None = Field(default=None, ge=0)
    rank: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one(self) -> Expect:
        if (self.at_step is None) == (self.at_epoch is None):
            raise ValueError("give exactly one of at_step, at_epoch")
        return self


class RuleTest(Strict):
    name: str = ""
    steps_per_epoch: int = Field(default=1_000_000_000, ge=1)
    input_series: list[Series] = Field(min_length=1)
    expected: list[Expect] = Field(min_length=1)


class TestFile(Strict):
    rule_files: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    tests: list[RuleTest] = Field(min_length=1)


@dataclass
class Outcome:
    name: str
    failures: list[str] = field(default_factory=list)


def load_rules_file(path: Path) -> RulesFile:
    """A user's rules file: its rules only, over the shipped params plus its own."""
    own = load_rules_text(path.read_text())
    return RulesFile(params={**shipped().params, **own.params}, rules=own.rules)


def ruleset_for_files(paths: list[Path], config: dict[str, Any]) -> RuleSet:
    """The rule set of some rule files (none: the shipped checklist) under a trainer config."""
    if not paths:
        return build(config)
    files = [load_rules_file(path) for path in paths]
    params = {name: spec for f in files for name, spec in f.params.items()}
    return build(config, rules_file=RulesFile(params=params, rules=[r for f in files for r in f.rules]))


def run_file(path: Path) -> list[Outcome]:
    """Run every test of a test file; RuleError when the file or its rules are invalid."""
    try:
        spec = TestFile.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        raise RuleError(from_validation(exc, [])) from None
    ruleset = ruleset_for_files([path.parent / name for name in spec.rule_files], spec.config)
    return [run_test(ruleset, test, index) for index, test in enumerate(spec.tests)]


def run_test(ruleset: RuleSet, test: RuleTest, index: int) -> Outcome:
    """Feed one test's series through a fresh engine and compare the expected states."""
    outcome = Outcome(test.name or f"test {index}")
    batch, epoch = _series(test, index)
    engine, states = RuleEngine(ruleset), {}
    steps = max((len(v) for v in batch.values()), default=0)
    ranks = sorted({rank for rank, _ in batch} | {rank for rank, _ in epoch})
    epochs_done = -1
    for step in range(steps):
        current = step // test.steps_per_epoch
        while epochs_done < current - 1:
            epochs_done += 1
            _close_epoch(engine, states, epoch, ranks, epochs_done, step - 1, test, outcome)
        for rank in ranks:
            values = {name: vals[step] for (r, name), vals in batch.items() if r == rank and step < len(vals)}
            engine.evaluate_batch(states, _batch_reading(step, current, rank, values), now=float(step))
        _check(states, [e for e in test.expected if e.at_step == step], f"step {step}", outcome)
    last = max((len(v) for v in epoch.values()), default=0)
    while epochs_done < last - 1:
        epochs_done += 1
        _close_epoch(engine, states, epoch, ranks, epochs_done, steps - 1 if steps else None, test, outcome)
    return outcome


def _series(test: RuleTest, index: int) -> tuple[dict, dict]:
    batch: dict[tuple[int, str], list] = {}
    epoch: dict[tuple[int, str], list] = {}
    for number, series in enumerate(test.input_series):
        name = series.series
        known = name.startswith(("extra.", "epoch.extra.")) or name in BATCH_READINGS \
            or name.removeprefix("epoch.") in EPOCH_READINGS and name.startswith("epoch.")
        if not known:
            raise RuleError([problem(["tests", index, "input_series", number, "series"], "series",
                                     "not a reading, extra.NAME, epoch.NAME or epoch.extra.NAME")])
        try:
            values = expand(series.values)
        except ValueError as exc:
            raise RuleError([problem(["tests", index, "input_series", number, "values"], "series", str(exc))]) from None
        (epoch if name.startswith("epoch.") else batch)[(series.rank, name)] = values
    return batch, epoch


def _batch_reading(step: int, epoch: int, rank: int, values: dict[str, float | None]) -> BatchReading:
    fields = {k: v for k, v in values.items() if not k.startswith("extra.")}
    extra = {k[len("extra."):]: v for k, v in values.items() if k.startswith("extra.")}
    return BatchReading(step=step, epoch=epoch, rank=rank, extra=extra or None, **fields)


def _close_epoch(engine: RuleEngine, states: dict, epoch: dict, ranks: list[int], number: int, step: int | None,
                 test: RuleTest, outcome: Outcome) -> None:
    for rank in ranks:
        values = {name: vals[number] for (r, name), vals in epoch.items() if r == rank and number < len(vals)}
        fields = {k[len("epoch."):]: (None if v is None else _epoch_value(k, v))
                  for k, v in values.items() if not k.startswith("epoch.extra.")}
        extra = {k[len("epoch.extra."):]: v for k, v in values.items() if k.startswith("epoch.extra.")}
        engine.evaluate_epoch(states, EpochReading(epoch=number, rank=rank, extra=extra or None, **fields), step=step)
    _check(states, [e for e in test.expected if e.at_epoch == number], f"epoch {number}", outcome)


def _epoch_value(name: str, value: float) -> float | int:
    """Counts are whole numbers in EpochReading; accuracies stay floats."""
    return value if "accuracy" in name or not math.isfinite(value) else int(value)


def _check(states: dict, expected: list[Expect], where: str, outcome: Outcome) -> None:
    for item in expected:
        state = states.get((item.rule, item.rank))
        status = state.status if state else "ok"
        if status != item.status:
            value = "" if state is None or state.value is None else f" (value {state.value:g})"
            outcome.failures.append(f"at {where}, rule {item.rule} rank {item.rank}: expected {item.status}, "
                                    f"got {status}{value}")
