"""Asynchronous per-batch readings: reduce on a side CUDA stream, copy once, hand out later.

Split from :mod:`trainer_client.diagnostics` (the reductions themselves); import either
module: ``trainer_client.diagnostics.DiagnosticsCollector`` is this class.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from trainer_client.diagnostics import READINGS, Number, _as_tensor_or_float, _on, reading_tensors

__all__ = ["DiagnosticsCollector"]

logger = logging.getLogger(__name__)


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
    ``side_stream=False`` queues the reductions on the training stream instead
    (for code that must keep every kernel on one stream).
    """

    def __init__(self, sink: Callable[[dict], None] | None = None, max_pending: int = 64,
                 class_dim: int = 1, ignore_index: int | None = None, side_stream: bool = True) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.sink = sink
        self.side_stream = side_stream
        self._streams: dict[torch.device, torch.cuda.Stream] = {}
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
        inputs = [t for t in (lora_delta, stop_logits, attention, logits, targets, loss, grad_norm,
                              *(extra or {}).values()) if isinstance(t, Tensor)]
        stream = self._side_stream_for(inputs)
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            item = self._reduce(step, epoch, rank, lora_delta, stop_logits, attention, logits, targets,
                                loss, grad_norm, extra)
        if stream is not None:
            for tensor in inputs:  # the training loop may free them before the side stream has read them
                tensor.record_stream(stream)
        self._pending.append(item)
        if len(self._pending) > self.max_pending:
            self._wait_oldest()
        if self.sink is not None:
            self.poll()

    def _side_stream_for(self, inputs: list[Tensor]) -> torch.cuda.Stream | None:
        """A CUDA stream of our own that first waits for the training stream's work so far.

        Why: the reductions then overlap the next step's kernels instead of queueing behind
        them on the training stream, so their GPU time mostly disappears from the step time.
        """
        device = next((t.device for t in inputs if t.is_cuda), None)
        if not self.side_stream or device is None:
            return None
        stream = self._streams.get(device)
        if stream is None:
            stream = self._streams[device] = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        return stream

    def _reduce(self, step: int, epoch: int, rank: int, lora_delta: Tensor | None, stop_logits: Tensor | None,
                attention: Tensor | None, logits: Tensor | None, targets: Tensor | None, loss: Number | None,
                grad_norm: Number | None, extra: dict[str, Number] | None) -> _Pending:
        """Launch the reductions and the copy of their results on the current stream."""
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
        return item

    def _launch(self, item: _Pending, dev: list[Tensor]) -> None:
        """Stack the device readings into one float32 vector and start its copy to the host."""
        device = next((t.device for t in dev if t.is_cuda), dev[0].device)
        stacked = torch.stack([_on(t, device) for t in dev])
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
