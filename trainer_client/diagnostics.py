"""Per-batch health readings for the RLAN trainer, without a host sync per batch.

``.item()`` on each reading stalls the CPU until the GPU has finished the step,
once per reading. :class:`DiagnosticsCollector` instead reduces on the device,
stacks one batch's readings into a single float32 vector, starts one
``non_blocking`` copy into a recycled pinned buffer and records a CUDA event;
``poll`` hands readings out once their event has completed. :func:`item_readings`
is the naive way: the overhead benchmark's baseline and the tests' oracle.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

__all__ = [
    "READINGS", "lora_norm_stats", "stop_logit_variance", "attention_stats", "logit_range",
    "batch_accuracy", "nonfinite_count", "reading_tensors", "item_readings", "DiagnosticsCollector",
]

logger = logging.getLogger(__name__)

READINGS: tuple[str, ...] = (
    "lora_norm_mean", "lora_norm_max", "stop_logit_var", "attention_max", "attention_entropy",
    "logit_min", "logit_max", "accuracy", "loss", "nan_count", "grad_norm",
)

Number = Tensor | float


def _f32(t: Tensor) -> Tensor:
    """Detached float32 view: readings are reported in float32 whatever the compute dtype."""
    return t.detach().float()


@torch.no_grad()
def lora_norm_stats(delta: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and max over the batch of the per-sample Frobenius norm of ``(B, D, D)`` deltas."""
    norms = torch.linalg.vector_norm(_f32(delta).flatten(1), dim=1)
    return norms.mean(), norms.max()


@torch.no_grad()
def stop_logit_variance(stop_logits: Tensor) -> Tensor:
    """Population variance (``correction=0``) over all elements of the ``(B, K)`` stop logits.

    Why: variance near 0 means the stop head ignores its input (dead controller).
    """
    return torch.var(_f32(stop_logits), correction=0)


@torch.no_grad()
def attention_stats(attn: Tensor) -> tuple[Tensor, Tensor]:
    """Max of the raw maps and mean (over B, K) entropy, in nats, of each normalised H*W map.

    Each map is divided by its sum; ``0 * log 0`` counts as 0. An all-zero map
    has entropy 0 (its divisor is clamped to the smallest normal float).
    """
    a = _f32(attn)
    flat = a.flatten(2)
    p = flat / flat.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return a.max(), -torch.special.xlogy(p, p).sum(dim=-1).mean()


@torch.no_grad()
def logit_range(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Min and max of the logits (NaN propagates)."""
    t = _f32(logits)
    return t.min(), t.max()


@torch.no_grad()
def batch_accuracy(logits: Tensor, targets: Tensor, class_dim: int = 1,
                   ignore_index: int | None = None) -> Tensor:
    """Fraction of argmax predictions over ``class_dim`` equal to ``targets``.

    Positions whose target equals ``ignore_index`` are excluded; if all are
    excluded the result is NaN (undefined, reported as data, not hidden as 0).
    """
    pred = logits.detach().argmax(dim=class_dim)
    if pred.shape != targets.shape:
        raise ValueError(f"argmax over dim {class_dim} gives shape {tuple(pred.shape)}, "
                         f"targets have {tuple(targets.shape)}")
    correct = pred == targets
    if ignore_index is None:
        return correct.float().mean()
    valid = targets != ignore_index
    return (correct & valid).sum().float() / valid.sum().float()


@torch.no_grad()
def nonfinite_count(*tensors: Tensor) -> Tensor:
    """Number of NaN/Inf elements across all given tensors, as a 0-dim float32 tensor."""
    if not tensors:
        raise ValueError("nonfinite_count needs at least one tensor")
    device = next((t.device for t in tensors if t.is_cuda), tensors[0].device)
    counts = [(~torch.isfinite(t.detach())).sum().to(device) for t in tensors]
    return torch.stack(counts).sum().float()


def _as_tensor_or_float(value: Number) -> Tensor | float:
    """Keep Python numbers on the host (no H2D copy); reduce tensors to a 0-dim float32."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"scalar reading expected, got shape {tuple(value.shape)}")
        return _f32(value).reshape(())
    return float(value)


def reading_tensors(lora_delta: Tensor | None = None, stop_logits: Tensor | None = None,
                    attention: Tensor | None = None, logits: Tensor | None = None,
                    targets: Tensor | None = None, loss: Number | None = None,
                    grad_norm: Number | None = None, *, class_dim: int = 1,
                    ignore_index: int | None = None) -> dict[str, Tensor | float]:
    """All readings of one batch, in :data:`READINGS` order, as device 0-dim tensors or floats.

    Missing inputs give missing keys. ``nan_count`` covers every tensor input
    except the (integer) targets.
    """
    out: dict[str, Tensor | float] = {}
    if lora_delta is not None:
        out["lora_norm_mean"], out["lora_norm_max"] = lora_norm_stats(lora_delta)
    if stop_logits is not None:
        out["stop_logit_var"] = stop_logit_variance(stop_logits)
    if attention is not None:
        out["attention_max"], out["attention_entropy"] = attention_stats(attention)
    if logits is not None:
        out["logit_min"], out["logit_max"] = logit_range(logits)
        if targets is not None:
            out["accuracy"] = batch_accuracy(logits, targets, class_dim, ignore_index)
    if loss is not None:
        out["loss"] = _as_tensor_or_float(loss)
    inputs = (lora_delta, stop_logits, attention, logits, loss, grad_norm)
    checked = [t for t in inputs if isinstance(t, Tensor)]
    if checked:
        out["nan_count"] = nonfinite_count(*checked)
    if grad_norm is not None:
        out["grad_norm"] = _as_tensor_or_float(grad_norm)
    return out


def item_readings(lora_delta: Tensor | None = None, stop_logits: Tensor | None = None,
                  attention: Tensor | None = None, logits: Tensor | None = None,
                  targets: Tensor | None = None, loss: Number | None = None,
                  grad_norm: Number | None = None, *, class_dim: int = 1,
                  ignore_index: int | None = None) -> dict[str, float]:
    """Naive baseline: the same readings, each fetched with ``.item()`` (one host sync per reading)."""
    raw = reading_tensors(lora_delta, stop_logits, attention, logits, targets, loss, grad_norm,
                          class_dim=class_dim, ignore_index=ignore_index)
    return {k: (v.item() if isinstance(v, Tensor) else v) for k, v in raw.items()}


@dataclass
class _Slot:
    """A reusable host buffer plus the event that says when its copy has landed."""

    host: Tensor
    event: torch.cuda.Event


@dataclass
class _Pending:
    """One collected batch. ``entries`` are (is_extra, name, host value or None = next device value)."""

    meta: dict[str, int]
    entries: list[tuple[bool, str, float | None]]
    slot: _Slot | None = None  # CUDA path: pinned buffer + event
    values: Tensor | None = None  # CPU path: the stacked tensor itself


class DiagnosticsCollector:
    """Collects per-batch readings asynchronously and hands them out once they reach the host.

    ``collect`` never blocks on the GPU except when more than ``max_pending``
    batches are in flight: then it waits on the *oldest* batch's event only
    (bounded memory and lag, at the cost of one stall). Pinned host buffers
    (CUDA only) are recycled, so steady state allocates nothing per batch.
    Completed readings wait in a ready queue until ``poll``/``drain`` returns
    them; with a ``sink`` (e.g. ``MonitorClient.log``) ``collect`` polls
    opportunistically and every returned dict is also forwarded to the sink.
    """

    def __init__(self, sink: Callable[[dict], None] | None = None, max_pending: int = 64,
                 class_dim: int = 1, ignore_index: int | None = None) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.sink = sink
        self.max_pending = max_pending
        self.class_dim = class_dim
        self.ignore_index = ignore_index
        self._pending: deque[_Pending] = deque()
        self._ready: deque[dict] = deque()
        self._free: list[_Slot] = []
        self.slots_allocated = 0

    @property
    def pending(self) -> int:
        """Batches collected but not yet moved to the ready queue."""
        return len(self._pending)

    def collect(self, step: int, epoch: int, *, lora_delta: Tensor | None = None,
                stop_logits: Tensor | None = None, attention: Tensor | None = None,
                logits: Tensor | None = None, targets: Tensor | None = None,
                loss: Number | None = None, grad_norm: Number | None = None, rank: int = 0,
                extra: dict[str, Number] | None = None) -> None:
        """Reduce this batch's tensors on device and start one async copy of the result."""
        raw = reading_tensors(lora_delta, stop_logits, attention, logits, targets, loss, grad_norm,
                              class_dim=self.class_dim, ignore_index=self.ignore_index)
        extras = {k: _as_tensor_or_float(v) for k, v in (extra or {}).items()}
        item = _Pending(meta={"step": step, "epoch": epoch, "rank": rank}, entries=[])
        dev: list[Tensor] = []
        for is_extra, source in ((False, raw), (True, extras)):
            for name, value in source.items():
                if isinstance(value, Tensor):
                    dev.append(value)
                    item.entries.append((is_extra, name, None))
                else:  # Python numbers never visit the device
                    item.entries.append((is_extra, name, value))
        if dev:
            self._launch(item, dev)
        self._pending.append(item)
        if len(self._pending) > self.max_pending:
            self._wait_oldest()
        if self.sink is not None:
            self.poll()

    def _launch(self, item: _Pending, dev: list[Tensor]) -> None:
        """Stack the device readings into one float32 vector and start its copy to the host."""
        device = next((t.device for t in dev if t.is_cuda), dev[0].device)
        stacked = torch.stack([t.to(device, non_blocking=True) for t in dev])
        if device.type != "cuda":
            item.values = stacked
            return
        slot = self._take_slot(stacked.numel())
        slot.host[: stacked.numel()].copy_(stacked, non_blocking=True)
        slot.event.record(torch.cuda.current_stream(device))
        item.slot = slot

    def _take_slot(self, size: int) -> _Slot:
        """Reuse a free host buffer holding at least ``size`` values, else allocate one."""
        for i, slot in enumerate(self._free):
            if slot.host.numel() >= size:
                return self._free.pop(i)
        self.slots_allocated += 1
        return self._new_slot(max(size, len(READINGS) + 8))

    def _new_slot(self, capacity: int) -> _Slot:
        """A pinned buffer (so the copy is truly async) and its completion event."""
        return _Slot(torch.empty(capacity, dtype=torch.float32, pin_memory=True), torch.cuda.Event())

    def _wait_oldest(self) -> None:
        """Block on the oldest in-flight copy only (the documented bound on pending batches)."""
        oldest = self._pending[0]
        if oldest.slot is not None:
            logger.debug("diagnostics: %d pending, waiting on step %s", len(self._pending),
                         oldest.meta["step"])
            oldest.slot.event.synchronize()
        self._harvest(block=False)

    def _harvest(self, block: bool) -> None:
        """Move completed batches, in collection order, from the pending to the ready queue."""
        while self._pending:
            item = self._pending[0]
            if item.slot is not None:
                if block:
                    item.slot.event.synchronize()
                elif not item.slot.event.query():
                    break  # keep order: later batches wait behind this one
            self._pending.popleft()
            self._ready.append(self._to_dict(item))

    def _to_dict(self, item: _Pending) -> dict:
        """Build the reading dict of one batch and recycle its host buffer."""
        n_dev = sum(host is None for _, _, host in item.entries)
        if item.slot is not None:
            values = iter(item.slot.host[:n_dev].tolist())
            self._free.append(item.slot)
        else:
            values = iter(item.values.tolist() if item.values is not None else [])
        out: dict = dict(item.meta)
        extra: dict[str, float] = {}
        for is_extra, name, host in item.entries:
            (extra if is_extra else out)[name] = next(values) if host is None else host
        out["extra"] = extra
        return out

    def _emit(self) -> list[dict]:
        """Return everything ready and forward it to the sink (a failing sink never stops training)."""
        out = list(self._ready)
        self._ready.clear()
        if self.sink is not None:
            for record in out:
                try:
                    self.sink(record)
                except Exception:  # noqa: BLE001 - monitoring must not kill the run
                    logger.exception("diagnostics sink failed for step %s", record.get("step"))
        return out

    def poll(self) -> list[dict]:
        """Readings of all batches whose copy has completed, oldest first; never synchronises."""
        self._harvest(block=False)
        return self._emit()

    def drain(self) -> list[dict]:
        """Wait for every pending copy and return all remaining readings (epoch end / close)."""
        self._harvest(block=True)
        return self._emit()
