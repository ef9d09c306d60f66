"""Detectors: how one (reduced) value is judged. Bound, growth, drop, spike.

Each returns an :class:`Observation` (value, threshold, breached) or None when the value
says nothing yet (a growth window still filling, a spike window too short). Thresholds
are looked up per observation because a param can change with the epoch (phases).
NaN is unhealthy for every detector, and never enters a baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

Memory = dict[str, Any]
Threshold = Callable[[int | None], float]


@dataclass(frozen=True)
class Observation:
    """One rule's verdict on one reading; ``metric`` names what was actually read."""

    value: float | None
    threshold: float | None
    breached: bool
    metric: str | None = None
    excess: float = 0.0


@dataclass(frozen=True)
class BoundCheck:
    """``above`` and/or ``below`` (``outside`` is both); ``inclusive`` makes the bound itself a breach."""

    stateful = False

    above: Threshold | None
    below: Threshold | None
    inclusive: bool = False

    def observe(self, value: float, epoch: int | None, mem: Memory) -> Observation:
        if math.isnan(value):
            bound = self.above or self.below
            return Observation(value, bound(epoch) if bound else None, True, excess=math.inf)
        best: Observation | None = None
        for bound, sign in ((self.above, 1.0), (self.below, -1.0)):
            if bound is None:
                continue
            limit = bound(epoch)
            excess = sign * (value - limit)
            breached = excess > 0 or (self.inclusive and excess == 0)
            obs = Observation(value, limit, breached, excess=excess)
            if best is None or (obs.breached and not best.breached) or obs.excess > best.excess:
                best = obs
        assert best is not None
        return best


@dataclass(frozen=True)
class GrowthCheck:
    """``value / base - 1 > ratio``: base from ``window`` epochs back, or the first value since armed.

    The window keeps one base entry at or before ``epoch - window`` plus newer entries,
    so memory holds at most window + 1 values.
    """

    stateful = True

    ratio: Threshold
    window: int | None

    def observe(self, value: float, epoch: int | None, mem: Memory) -> Observation | None:
        ratio = self.ratio(epoch)
        if math.isnan(value):
            return Observation(math.nan, ratio, True, excess=math.inf)
        if self.window is None:
            base = mem.get("base")
            if base is None:
                if math.isfinite(value) and value > 0:
                    mem["base"] = value
                return None
            return self._verdict(value, base, ratio)
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
        return self._verdict(value, base, ratio)

    @staticmethod
    def _verdict(value: float, base: float, ratio: float) -> Observation:
        growth = value / base - 1.0
        return Observation(growth, ratio, growth > ratio, excess=growth - ratio)


@dataclass(frozen=True)
class DropCheck:
    """``best - value > from_best``, best being the highest value seen (NaN left out)."""

    stateful = True

    from_best: Threshold

    def observe(self, value: float, epoch: int | None, mem: Memory) -> Observation:
        limit = self.from_best(epoch)
        if math.isnan(value):
            return Observation(math.nan, limit, True, excess=math.inf)
        best = max(mem.get("best", value), value)
        mem["best"] = best
        drop = best - value
        return Observation(drop, limit, drop > limit, excess=drop - limit)


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

    def observe(self, value: float, epoch: int | None, mem: Memory) -> Observation | None:
        if math.isnan(value):
            return None  # a NaN batch is the nan_streak rule's business; a spike is a finite jump
        window: list[float] = mem.setdefault("w", [])
        verdicts = [self._sigma(value, window, mem), self._factor(value, mem)]
        seen = [v for v in verdicts if v is not None]
        breach = next((v for v in seen if v.breached), None)
        if breach is None and math.isfinite(value):
            self._add(value, window, mem)
        return breach or (seen[0] if seen else None)

    def _sigma(self, value: float, window: list[float], mem: Memory) -> Observation | None:
        if self.sigma is None or len(window) < self.min_samples:
            return None
        n, total, squares = len(window), mem["s"], mem["q"]
        mean = total / n
        std = math.sqrt(max(squares / n - mean * mean, 0.0))
        limit = mean + self.sigma * std
        return Observation(value, limit, value > limit and std > 0 or math.isinf(value), excess=value - limit)

    def _factor(self, value: float, mem: Memory) -> Observation | None:
        top = mem.get("max")
        if self.factor is None or top is None:
            return None
        limit = self.factor * top
        return Observation(value, limit, value > limit, excess=value - limit)

    def _add(self, value: float, window: list[float], mem: Memory) -> None:
        window.append(value)
        mem["s"] = mem.get("s", 0.0) + value
        mem["q"] = mem.get("q", 0.0) + value * value
        if len(window) > self.window:
            old = window.pop(0)
            mem["s"] -= old
            mem["q"] -= old * old
        mem["max"] = value if mem.get("max") is None else max(mem["max"], value)
