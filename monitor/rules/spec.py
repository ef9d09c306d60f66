"""The rules file's schema (pydantic v2, strict, no unknown fields).

A rules file holds ``params`` (thresholds and where the trainer's YAML keeps them) and
``rules`` (what to read and how to judge it), the way a Prometheus rule file holds
alerting rules. Every error carries a ``loc`` path so a bad field is named exactly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["warning", "pause"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
KeyPath = Annotated[str, Field(min_length=1, max_length=300)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)


class Strict(BaseModel):
    """Base: typos and wrong types are errors, never ignored."""

    model_config = _STRICT


class ParamRef(Strict):
    """A threshold taken from a param (optionally scaled, e.g. -1 for a lower clamp)."""

    param: Name
    scale: float = 1.0


Bound = float | ParamRef
CountOrParam = Count | ParamRef


class KeyedValue(Strict):
    """A value read from the trainer's YAML (first key found wins), else ``default``."""

    keys: list[KeyPath] = Field(default_factory=list, max_length=16)
    default: float | bool | None = None


class Phase(Strict):
    """From an epoch on, a param takes another value (e.g. the trainer's ``late_phase``)."""

    from_epoch: Count | KeyedValue
    enabled: bool | KeyedValue = True
    keys: list[KeyPath] = Field(default_factory=list, max_length=16)
    value: float | None = None


class Check(Strict):
    """Limits a resolved param must respect (a config value outside them is a 422)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None


class ParamSpec(Strict):
    """One threshold: where the trainer keeps it, its default, its limits, its phases."""

    keys: list[KeyPath] = Field(default_factory=list, max_length=16)
    default: float | bool | None = None
    type: Literal["number", "integer", "bool"] = "number"
    check: Check | None = None
    phases: list[Phase] = Field(default_factory=list, max_length=8)
    description: str = Field(default="", max_length=500)


class Warmup(Strict):
    """Observations before this are ignored (exactly one of the three)."""

    steps: CountOrParam | None = None
    epochs: CountOrParam | None = None
    until_reading_reaches: float | None = None

    @model_validator(mode="after")
    def _one(self) -> Warmup:
        if sum(v is not None for v in (self.steps, self.epochs, self.until_reading_reaches)) != 1:
            raise ValueError("give exactly one of steps, epochs, until_reading_reaches")
        return self


class Growth(Strict):
    """Relative growth against a baseline: ``value / base - 1 > ratio``."""

    ratio: Bound
    window_epochs: CountOrParam | None = None
    since: Literal["armed"] | None = None

    @model_validator(mode="after")
    def _one(self) -> Growth:
        if (self.window_epochs is None) == (self.since is None):
            raise ValueError("give exactly one of window_epochs, since")
        return self


class Drop(Strict):
    """Fall below the best value seen: ``best - value > from_best``."""

    from_best: Bound


class Spike(Strict):
    """Against a rolling mean/deviation (``sigma`` over ``window``) and/or a running max (``factor``)."""

    sigma: float | None = Field(default=None, gt=0)
    window: int = Field(default=128, ge=2, le=4096)
    min_samples: int | None = Field(default=None, ge=2, le=4096)
    factor: float | None = Field(default=None, gt=1)

    @model_validator(mode="after")
    def _some(self) -> Spike:
        if self.sigma is None and self.factor is None:
            raise ValueError("give sigma, factor, or both")
        return self


class Stale(Strict):
    """No record for ``seconds`` (judged by a time sweep, not by readings)."""

    seconds: float | ParamRef


Reduce = Literal["epoch_mean", "epoch_max", "epoch_min"] | dict[Literal["ema", "rolling_mean"], float | ParamRef]


class Condition(Strict):
    """One bound on one reading, for ``any:`` rules."""

    reading: Annotated[str, Field(min_length=1, max_length=200)]
    fallback: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list, max_length=8)
    above: Bound | None = None
    below: Bound | None = None
    outside: Annotated[list[Bound], Field(min_length=2, max_length=2)] | None = None  # [lo, hi]
    inclusive: bool = False

    @model_validator(mode="after")
    def _bounded(self) -> Condition:
        if self.above is None and self.below is None and self.outside is None:
            raise ValueError("give above, below or outside")
        if self.outside is not None and (self.above is not None or self.below is not None):
            raise ValueError("outside cannot be combined with above/below")
        return self


class Action(Strict):
    """A recommended remedy in the decision answer."""

    action: Name
    factor: float | None = None


DETECTORS = ("above", "below", "outside", "growth", "drop", "spike", "stale", "any")


class RuleSpec(Strict):
    """One rule: what it reads, how it judges, how long until it fires or resolves."""

    name: Name
    reading: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    fallback: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list, max_length=8)
    reduce: Reduce | None = None
    above: Bound | None = None
    below: Bound | None = None
    outside: Annotated[list[Bound], Field(min_length=2, max_length=2)] | None = None  # [lo, hi]
    inclusive: bool = False
    growth: Growth | None = None
    drop: Drop | None = None
    spike: Spike | None = None
    stale: Stale | None = None
    any: list[Condition] | None = Field(default=None, min_length=1, max_length=8)
    pick: Literal["first", "worst"] = "first"
    for_: CountOrParam = Field(default=1, alias="for")
    resolve: CountOrParam = 1
    keep_firing_for: CountOrParam = 0
    warmup: Warmup | None = None
    severity: Severity = "warning"
    labels: dict[Name, Annotated[str, Field(max_length=200)]] = Field(default_factory=dict, max_length=16)
    annotations: dict[Name, Annotated[str, Field(max_length=1000)]] = Field(default_factory=dict, max_length=16)
    actions: list[Name | Action] = Field(default_factory=list, max_length=8)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_detector(self) -> RuleSpec:
        families = {"bound" if d in ("above", "below", "outside") else d
                    for d in DETECTORS if getattr(self, d) is not None}
        if len(families) != 1:
            raise ValueError(f"give exactly one detector of {list(DETECTORS)} (above and below may be combined)")
        if self.outside is not None and (self.above is not None or self.below is not None):
            raise ValueError("outside cannot be combined with above/below")
        needs_reading = not ({"stale", "any"} & families)
        if needs_reading and self.reading is None:
            raise ValueError("this detector needs a reading")
        if not needs_reading and (self.reading is not None or self.reduce is not None):
            raise ValueError("stale and any rules take no reading/reduce of their own")
        return self


class RulesFile(Strict):
    """A whole rules file: params and rules (the shipped checklist is one)."""

    params: dict[Name, ParamSpec] = Field(default_factory=dict, max_length=256)
    rules: list[dict[str, Any]] = Field(default_factory=list, max_length=512)
