"""Reference detectors, each written from its documented rule, run offline over a corpus trace.

Each answers the same question as our service, once per epoch E of the trace: "pause before
epoch E?" (knowing everything up to the end of epoch E-1). They share :func:`verdicts`, which
feeds a detector the trace epoch by epoch, so all are scored on the same grid as the service.

- TrainerGate: SCI-ARC's own meta-escalation stability test (train_rlan.py, notes §2/§10.5):
  NaN streak, gradient-explosion and lr-backoff events over the per-epoch limits only; counters
  accumulate until a decision and are reset after it; late-phase limits from their epoch.
- EarlyStopping: PyTorch Lightning's callback (monitor eval accuracy, mode "max", min_delta,
  patience): stops once `patience` epochs in a row did not beat the best by more than min_delta.
- SpikeDetector: OLMo-core's StabilityMonitor idea: a value is a spike when it exceeds the mean
  of the previous `window` (128) values by more than `sigma` (6) standard deviations
  (on loss and grad norm; the window must be full; non-finite values are not spikes here).
- SpikyLoss: Megatron-LM --check-for-spiky-loss: a loss above `factor` (10) x the largest
  loss seen so far.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from benchmarks.corpus.trace import CorpusTrace


class Detector(Protocol):
    name: str

    def start(self, trace: CorpusTrace) -> None: ...
    def batch(self, record: dict[str, Any]) -> None: ...
    def epoch_end(self, summaries: list[dict[str, Any]]) -> None: ...
    def pause_before(self, epoch: int) -> bool: ...


def verdicts(detector: Detector, trace: CorpusTrace) -> list[bool]:
    """Pause-or-not for epochs 0..asked_epochs, asked at the start of each (as the trainer asks)."""
    detector.start(trace)
    by_epoch: dict[int, list[dict[str, Any]]] = {}
    for record in trace.records:
        by_epoch.setdefault(record["epoch"], []).append(record)
    answers = []
    for epoch in range(trace.asked_epochs + 1):
        answers.append(bool(detector.pause_before(epoch)))
        for record in by_epoch.get(epoch, ()):
            detector.batch(record)
        summaries = trace.summaries_of(epoch)
        if summaries:
            detector.epoch_end(summaries)
    return answers


def _get(tree: dict[str, Any], dotted: str, default: Any) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return default if node is None else node


class TrainerGate:
    """``is_stable = nan_streak <= max_nan and grad_events <= max_grad and lr_events <= max_lr``."""

    name = "trainer_gate"
    _LIMITS = ("max_consecutive_nan_streak_per_epoch", "max_grad_explosion_events_per_epoch",
               "max_lr_backoff_events_per_epoch")

    def start(self, trace: CorpusTrace) -> None:
        meta = _get(trace.config, "training.meta_escalation", {})
        self.enabled = bool(meta.get("enabled", False))
        self.start_epoch = int(meta.get("start_epoch", 25))
        self.normal = [int(meta.get(key, 0) or 0) for key in self._LIMITS]
        late = meta.get("late_phase") or {}
        self.late_start = int(late.get("start_epoch", 50)) if late.get("enabled", True) else None
        self.late = [int(late.get(key, 0) or 0) for key in self._LIMITS]  # trainer reads only *_per_epoch keys
        self.nan_streak = self.grad_events = self.lr_events = 0

    def batch(self, record: dict[str, Any]) -> None:
        return None

    def epoch_end(self, summaries: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        self.nan_streak = max([self.nan_streak] + [int(s.get("max_nan_streak") or 0) for s in summaries])
        self.grad_events += max(int(s.get("grad_explosion_events") or 0) for s in summaries)
        self.lr_events += max(int(s.get("lr_backoff_events") or 0) for s in summaries)

    def pause_before(self, epoch: int) -> bool:
        if not self.enabled or epoch < self.start_epoch:
            return False
        limits = self.late if self.late_start is not None and epoch >= self.late_start else self.normal
        stable = (self.nan_streak <= limits[0] and self.grad_events <= limits[1] and self.lr_events <= limits[2])
        self.nan_streak = self.grad_events = self.lr_events = 0  # reset right after each decision
        return not stable


class EarlyStopping:
    """Lightning's EarlyStopping on eval accuracy (worst rank), mode max; once stopped, stays stopped."""

    def __init__(self, patience: int = 3, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.name = f"early_stopping(patience={patience}, min_delta={min_delta:g})"

    def start(self, trace: CorpusTrace) -> None:
        self.best, self.wait, self.stopped = -math.inf, 0, False

    def batch(self, record: dict[str, Any]) -> None:
        return None

    def epoch_end(self, summaries: list[dict[str, Any]]) -> None:
        values = [s.get("eval_accuracy") for s in summaries]
        values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if not values or self.stopped:
            return
        current = min(values)
        if current - self.min_delta > self.best:
            self.best, self.wait = current, 0
        else:
            self.wait += 1
            self.stopped = self.wait >= self.patience

    def pause_before(self, epoch: int) -> bool:
        return self.stopped


class _PerEpochFlag:
    """Batch detectors flag the epoch they fire in; the pause is for the next epoch only."""

    def start(self, trace: CorpusTrace) -> None:
        self.flagged: set[int] = set()
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def pause_before(self, epoch: int) -> bool:
        return epoch - 1 in self.flagged


class SpikeDetector(_PerEpochFlag):
    """``value > mean + sigma * std`` of the previous ``window`` finite values, per rank and series."""

    def __init__(self, series: Iterable[str] = ("loss", "grad_norm"), window: int = 128, sigma: float = 6.0) -> None:
        self.series, self.window, self.sigma = tuple(series), window, sigma
        self.name = f"spike_{sigma:g}sigma_{window}"

    def reset(self) -> None:
        self.values: dict[tuple[int, str], deque[float]] = {}

    def batch(self, record: dict[str, Any]) -> None:
        for name in self.series:
            value = record.get(name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            past = self.values.setdefault((record.get("rank", 0), name), deque(maxlen=self.window))
            if len(past) == self.window:
                mean = sum(past) / len(past)
                std = math.sqrt(sum((v - mean) ** 2 for v in past) / len(past))
                if std > 0 and value > mean + self.sigma * std:
                    self.flagged.add(record["epoch"])
            past.append(float(value))

    def epoch_end(self, summaries: list[dict[str, Any]]) -> None:
        return None


class SpikyLoss(_PerEpochFlag):
    """Megatron's spiky-loss check: ``loss > factor * max(previous losses)``, per rank."""

    def __init__(self, factor: float = 10.0) -> None:
        self.factor = factor
        self.name = f"spiky_loss_{factor:g}x_max"

    def reset(self) -> None:
        self.largest: dict[int, float] = {}

    def batch(self, record: dict[str, Any]) -> None:
        loss = record.get("loss")
        if not isinstance(loss, (int, float)) or not math.isfinite(loss):
            return
        rank = record.get("rank", 0)
        if rank in self.largest and loss > self.factor * self.largest[rank]:
            self.flagged.add(record["epoch"])
        self.largest[rank] = max(self.largest.get(rank, loss), loss)

    def epoch_end(self, summaries: list[dict[str, Any]]) -> None:
        return None


def reference_detectors() -> list[Detector]:
    """The detectors the table compares with, at their documented defaults."""
    return [TrainerGate(), EarlyStopping(patience=3), EarlyStopping(patience=10, min_delta=0.01),
            SpikeDetector(), SpikyLoss()]
