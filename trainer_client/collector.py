"""Asynchronous per-batch readings: reduce on a side CUDA stream, copy once, hand out later.

Split from :mod:`trainer_client.diagnostics` (the reductions themselves); import either
module: ``trainer_client.diagnostics.DiagnosticsCollector`` is this class.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from trainer_client.diagnostics import (
    READINGS,
    LoraDeltas,
    Number,
    _as_tensor_or_float,
    _on,
    _tensors,
    reading_tensors,
)

__all__ = ["DiagnosticsCollector"]

logger = logging.getLogger(__name__)


@dataclass
class _Slot:
    """A reusable host buffer plus the event that says when its copy has landed."""

    host: Tensor
    event: torch.cuda.Event


@dataclass
class _Batch:
    """One batch's inputs as given to :meth:`DiagnosticsCollector.collect`."""

    lora_delta: LoraDeltas | None
    stop_logits: Tensor | None
    attention: Tensor | None
    logits: Tensor | None
    targets: Tensor | None
    loss: Number | None
    grad_norm: Number | None
    extra: Mapping[str, Number] | None
    attention_mask: Tensor | None
    lora_preclamp_norms: Tensor | Mapping[str, object] | None
    ignore_index: int | None


@dataclass
class _Pending:
    """One collected batch. ``entries`` are (is_extra, name, host value or None = next device value)."""

    meta: dict[str, int]
    entries: list[tuple[bool, str, float | None]]
    slot: _Slot | None = None  # CUDA path: pinned buffer + event
    values: Tensor | None = None  # CPU path: the stacked tensor itself


class DiagnosticsCollector:
    """Collects per-batch readings asynchronously and hands them out once they reach the host.

    ``ignore_index`` (e.g. -100 in ARC): target value left out of ``accuracy``;
    ``class_dim``: the class dimension of the logits (1 for ``(B, C, H, W)``, -1 for
    ``(B, H, W, C)``).

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
        self.skipped: Counter[str] = Counter()  # "reading: error type" -> readings left out
        self._batch_skips = 0

    @property
    def pending(self) -> int:
        """Batches collected but not yet moved to the ready queue."""
        return len(self._pending)

    def collect(self, step: int, epoch: int, *, lora_delta: LoraDeltas | None = None,
                stop_logits: Tensor | None = None, attention: Tensor | None = None,
                logits: Tensor | None = None, targets: Tensor | None = None,
                loss: Number | None = None, grad_norm: Number | None = None, rank: int = 0,
                extra: Mapping[str, Number] | None = None, attention_mask: Tensor | None = None,
                lora_preclamp_norms: Tensor | Mapping[str, object] | None = None,
                ignore_index: int | None = None) -> None:
        """Reduce this batch's tensors on device and start one async copy of the result.

        Never raises into the training loop: an unusable input (a delta dict without
        matrices, ``(B, H, W, C)`` logits with ``class_dim=1``, a list in ``extra``, a wrong
        dtype) costs only its reading; it is logged once per kind and counted in
        :attr:`skipped` and in the record's ``extra.diagnostics_skipped``.
        ``ignore_index`` overrides the collector's for this batch (targets equal to it are
        left out of ``accuracy``; ARC uses -100). ``lora_delta`` may be RLAN's dict of deltas.
        """
        try:
            inputs = list(_tensors(lora_delta, stop_logits, attention, logits, targets, loss, grad_norm,
                                   attention_mask, lora_preclamp_norms, extra))
            batch = _Batch(lora_delta, stop_logits, attention, logits, targets, loss, grad_norm, extra,
                           attention_mask, lora_preclamp_norms,
                           self.ignore_index if ignore_index is None else ignore_index)
            stream = self._side_stream_for(inputs)
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                item = self._reduce(step, epoch, rank, batch)
            if stream is not None:
                for tensor in inputs:  # the training loop may free them before the side stream has read them
                    tensor.record_stream(stream)
        except Exception as exc:  # noqa: BLE001 - monitoring must never break training
            self._skip("batch", exc)
            return
        self._pending.append(item)
        if len(self._pending) > self.max_pending:
            self._wait_oldest()
        if self.sink is not None:
            self.poll()

    def _skip(self, kind: str, exc: Exception) -> None:
        """Count a reading left out; log it once per (kind, error type)."""
        key = f"{kind}: {type(exc).__name__}"
        self.skipped[key] += 1
        self._batch_skips += 1
        if self.skipped[key] == 1:
            logger.warning("diagnostics: %s reading skipped (%s: %s); logged once, counted in "
                           "DiagnosticsCollector.skipped", kind, type(exc).__name__, exc)

    def stats(self) -> dict[str, object]:
        """``skipped``: readings left out so far; ``skipped_kinds``: {"reading: error": count}."""
        return {"skipped": sum(self.skipped.values()), "skipped_kinds": dict(self.skipped),
                "pending": self.pending}

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

    def _reduce(self, step: int, epoch: int, rank: int, batch: _Batch) -> _Pending:
        """Launch the reductions and the copy of their results on the current stream."""
        self._batch_skips = 0
        raw = reading_tensors(batch.lora_delta, batch.stop_logits, batch.attention, batch.logits, batch.targets,
                              batch.loss, batch.grad_norm, class_dim=self.class_dim,
                              ignore_index=batch.ignore_index, attention_mask=batch.attention_mask,
                              lora_preclamp_norms=batch.lora_preclamp_norms, on_error=self._skip)
        extras = self._extras(batch.extra)
        if self._batch_skips:
            extras["diagnostics_skipped"] = float(self._batch_skips)
        item = _Pending(meta={"step": step, "epoch": epoch, "rank": rank}, entries=[])
        dev: list[Tensor] = []
        for source in (raw, extras):
            for name, value in source.items():
                is_extra = source is extras or name not in READINGS
                if isinstance(value, Tensor):
                    dev.append(value)
                    item.entries.append((is_extra, name, None))
                else:  # Python numbers never visit the device
                    item.entries.append((is_extra, name, value))
        if dev:
            self._launch(item, dev)
        return item

    def _extras(self, extra: Mapping[str, Number] | None) -> dict[str, Tensor | float]:
        """The caller's extra readings as 0-dim tensors or floats; unusable ones skipped (counted)."""
        out: dict[str, Tensor | float] = {}
        if extra is None:
            return out
        for name, value in extra.items():
            try:
                out[str(name)] = _as_tensor_or_float(value)
            except Exception as exc:  # noqa: BLE001 - one bad extra costs only itself
                self._skip(f"extra.{name}", exc)
        return out

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
