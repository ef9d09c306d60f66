"""Detectors: how one (reduced) value is judged. Bound, growth, drop, spike.

Each returns an :class:`Observation` (value, threshold, breached) or None when the value
says nothing yet (a growth window still filling, a spike window too short). Thresholds
are looked up per observation because a param can change with the epoch (phases).
NaN is unhealthy for every detector, and never enters a baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

Memory = dict[str, Any]
Threshold = Callable[[int | None], float]


class Observation(NamedTuple):
    """One rule's verdict on one reading; ``metric`` names what was actually read.

    A NamedTuple, not a dataclass: one is made per rule per reading, and this is the
    cheapest object Python builds (the engine's cost is mostly object creation).
    """

    value: float | None
    threshold: float | None
    breached: bool
    metric: str | None = None
    excess: float = 0.0


class BoundCheck:
    """``above`` and/or ``below`` (``outside`` is both); ``inclusive`` makes the bound itself a breach.

    A bound without phases is a constant (``fixed_*``): no call per reading.
    """

    stateful = False
    __slots__ = ("above", "below", "inclusive", "_fixed_above", "_fixed_below")

    def __init__(self, above: Threshold | None, below: Threshold | None, inclusive: bool = False,
                 fixed_above: float | None = None, fixed_below: float | None = None) -> None:
        self.above, self.below, self.inclusive = above, below, inclusive
        self._fixed_above, self._fixed_below = fixed_above, fixed_below

    def observe(self, value: float, epoch: int | None, mem: Memory, metric: str | None = None) -> Observation:
        high = None if self.above is None else (self._fixed_above if self._fixed_above is not None
                                                 else self.above(epoch))
        low = None if self.below is None else (self._fixed_below if self._fixed_below is not None
                                                else self.below(epoch))
        if value != value:  # NaN
            return Observation(value, high if high is not None else low, True, metric, math.inf)
        if low is None:
            excess = value - high  # type: ignore[operator]
            return Observation(value, high, excess > 0 or (self.inclusive and excess == 0), metric, excess)
        low_excess = low - value
        if high is None or (high is not None and low_excess > value - high):
            return Observation(value, low, low_excess > 0 or (self.inclusive and low_excess == 0), metric,
                               low_excess)
        excess = value - high
        return Observation(value, high, excess > 0 or (self.inclusive and excess == 0), metric, excess)


@dataclass(frozen=True)
class GrowthCheck:
    """``value / base - 1 > ratio``: base from ``window`` epochs back, or the first value since armed.

    The window keeps one base entry at or before ``epoch - window`` plus newer entries,
    so memory holds at most window + 1 values.
    """

    stateful = True

    ratio: Threshold
    window: int | None

    def observe(self, value: float, epoch: int | None, mem: Memory, metric: str | None = None) -> Observation | None:
        ratio = self.ratio(epoch)
        if math.isnan(value):
            return Observation(math.nan, ratio, True, metric, math.inf)
        if self.window is None:
            base = mem.get("base")
            if base is None:
                if math.isfinite(value) and value > 0:
                    mem["base"] = value
                return None
            return self._verdict(value, base, ratio, metric)
        if epoch is None:
            return None
        means: list[list[float]] = mem.setdefault("means", [])
        if not means or epoch > means[-1][0]:
            means.append([epoch, value])
        while len(means) > 1 and means[1][0] <= epoch - self.window:
            means.pop(0)
        base_epoch, base = means[0]
        if base_epoch > epoch - self.window or not (math.isfinite(base) and base > 0):
            return None  # window not yet full (early training) or no usable base
        return self._verdict(value, base, ratio, metric)

    @staticmethod
    def _verdict(value: float, base: float, ratio: float, metric: str | None) -> Observation:
        growth = value / base - 1.0
        return Observation(growth, ratio, growth > ratio, metric, growth - ratio)


@dataclass(frozen=True)
class DropCheck:
    """``best - value > from_best``, best being the highest value seen (NaN left out)."""

    stateful = True

    from_best: Threshold

    def observe(self, value: float, epoch: int | None, mem: Memory, metric: str | None = None) -> Observation:
        limit = self.from_best(epoch)
        if math.isnan(value):
            return Observation(math.nan, limit, True, metric, math.inf)
        best = max(mem.get("best", value), value)
        mem["best"] = best
        drop = best - value
        return Observation(drop, limit, drop > limit, metric, drop - limit)


@dataclass(frozen=True)
class SpikeCheck:
    """Upward spike: ``value - mean > sigma * std`` over a rolling window (OLMo-core: 6 sigma
    over 128) and/or ``value > factor * running max`` (Megatron: 10x the largest loss).

    Breaching values stay out of the window and the max, so one spike does not hide the next.
    NaN is no observation here (trainers skip NaN batches; ``nan_streak`` judges them), +Inf is a spike.
    """

    stateful = True

    sigma: float | None
    window: int
    min_samples: int
    factor: float | None

    def observe(self, value: float, epoch: int | None, mem: Memory, metric: str | None = None) -> Observation | None:
        if math.isnan(value):
            return None  # a NaN batch is the nan_streak rule's business; a spike is a finite jump
        window: list[float] = mem.setdefault("w", [])
        sigma_limit = factor_limit = None
        if self.sigma is not None and len(window) >= self.min_samples:
            n = len(window)
            mean = mem["s"] / n
            std = math.sqrt(max(mem["q"] / n - mean * mean, 0.0))
            sigma_limit = mean + self.sigma * std
            if (value > sigma_limit and std > 0) or value == math.inf:
                return Observation(value, sigma_limit, True, metric, value - sigma_limit)
        top = mem.get("max")
        if self.factor is not None and top is not None:
            factor_limit = self.factor * top
            if value > factor_limit:
                return Observation(value, factor_limit, True, metric, value - factor_limit)
        if value != math.inf and value != -math.inf:
            self._add(value, window, mem)
        limit = sigma_limit if sigma_limit is not None else factor_limit
        return None if limit is None else Observation(value, limit, False, metric, value - limit)

    def _add(self, value: float, window: list[float], mem: Memory) -> None:
        window.append(value)
        mem["s"] = mem.get("s", 0.0) + value
        mem["q"] = mem.get("q", 0.0) + value * value
        if len(window) > self.window:
            old = window.pop(0)
            mem["s"] -= old
            mem["q"] -= old * old
        mem["max"] = value if mem.get("max") is None else max(mem["max"], value)
