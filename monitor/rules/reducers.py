"""Reduce stages between a reading and its detector: per-epoch mean/max/min, EMA, rolling mean.

Each keeps its working state in a small JSON dict (``state.memory``), so evaluation stays
O(1) per reading and survives restarts. ``push`` returns ``(value, epoch)`` when a reduced
value is ready (an epoch reducer emits the finished epoch when the first reading of a
later epoch arrives), else None. Non-finite readings never enter a mean (they would
poison it for good); a NaN is passed on as a NaN observation instead (unhealthy).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

Memory = dict[str, Any]
Emitted = tuple[float, int | None] | None


class Reducer(Protocol):
    stateful: bool

    def push(self, value: float, epoch: int | None, mem: Memory) -> Emitted: ...


class Identity:
    """No reduce stage: every reading is an observation."""

    stateful = False

    def push(self, value: float, epoch: int | None, mem: Memory) -> Emitted:
        return value, epoch


class EpochReducer:
    """Mean, max or min over one epoch's readings, emitted once the epoch is over."""

    stateful = True

    def __init__(self, how: str) -> None:
        self.how = how

    def push(self, value: float, epoch: int | None, mem: Memory) -> Emitted:
        current = mem.get("epoch")
        if epoch is None or (current is not None and epoch < current):
            return None  # stray reading of a closed epoch: its value is already out
        emitted = None
        if current is not None and epoch > current:
            emitted = self._close(mem)
        if current is None or epoch > current:
            mem.update(epoch=epoch, acc=None, n=0, bad=0)
        if math.isfinite(value):
            acc = mem["acc"]
            mem["acc"] = value if acc is None else self._fold(acc, value)
            mem["n"] += 1
        else:
            mem["bad"] += 1
        return emitted

    def _fold(self, acc: float, value: float) -> float:
        if self.how == "epoch_mean":
            return acc + value
        return max(acc, value) if self.how == "epoch_max" else min(acc, value)

    def _close(self, mem: Memory) -> Emitted:
        if mem["n"] == 0:
            return (math.nan, mem["epoch"]) if mem["bad"] else None
        acc = mem["acc"]
        return (acc / mem["n"] if self.how == "epoch_mean" else acc), mem["epoch"]


class Ema:
    """``ema = decay * ema + (1 - decay) * value``, starting at the first value."""

    stateful = True

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def push(self, value: float, epoch: int | None, mem: Memory) -> Emitted:
        if not math.isfinite(value):
            return math.nan, epoch
        ema = mem.get("ema")
        ema = value if ema is None else self.decay * ema + (1.0 - self.decay) * value
        mem["ema"] = ema
        return ema, epoch


class RollingMean:
    """Mean of the last ``size`` finite readings (memory holds at most ``size`` values)."""

    stateful = True

    def __init__(self, size: int) -> None:
        self.size = size

    def push(self, value: float, epoch: int | None, mem: Memory) -> Emitted:
        if not math.isfinite(value):
            return math.nan, epoch
        window: list[float] = mem.setdefault("window", [])
        window.append(value)
        total = mem.get("sum", 0.0) + value
        if len(window) > self.size:
            total -= window.pop(0)
        mem["sum"] = total
        return total / len(window), epoch


def make_reducer(spec: Any, arg: float | None = None) -> Reducer:
    """The reducer for a rule's ``reduce`` field, ``arg`` its resolved number (validated beforehand)."""
    if spec is None:
        return Identity()
    if isinstance(spec, str):
        return EpochReducer(spec)
    (kind, _), = spec.items()
    return Ema(float(arg)) if kind == "ema" else RollingMean(int(arg))


def check_reducer(spec: Any, arg: float | None) -> str | None:
    """Why a reduce spec (with its resolved number ``arg``) is unusable, or None."""
    if spec is None or isinstance(spec, str):
        return None
    if len(spec) != 1 or arg is None:
        return "give one of ema, rolling_mean"
    (kind, _), = spec.items()
    if kind == "ema" and not 0 <= arg < 1:
        return "ema decay must be in [0, 1)"
    if kind == "rolling_mean" and (not float(arg).is_integer() or not 1 <= arg <= 1024):
        return "rolling_mean must be a whole number of readings in 1..1024"
    return None
