"""Tests for trainer_client.diagnostics: reductions, the async collector, and its CUDA path."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from trainer_client import collector as collector_module
from trainer_client import diagnostics as diag
from trainer_client.diagnostics import (
    READINGS,
    DiagnosticsCollector,
    attention_stats,
    batch_accuracy,
    item_readings,
    logit_range,
    lora_norm_stats,
    nonfinite_count,
    stop_logit_variance,
)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(
    not CUDA, reason="CUDA not available: pinned-buffer/event path needs a GPU (CPU path tested above)"
)
META = {"step", "epoch", "rank", "extra"}


def _batch(device: str = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """A small fake RLAN batch: deltas, stop logits, clue maps, class logits, targets."""
    g = torch.Generator().manual_seed(seed)
    b, d, k, h, w, c = 4, 8, 3, 5, 5, 10
    logits = torch.randn(b, c, h, w, generator=g)
    batch = {
        "lora_delta": torch.randn(b, d, d, generator=g),
        "stop_logits": torch.randn(b, k, generator=g),
        "attention": torch.softmax(torch.randn(b, k, h * w, generator=g), -1).view(b, k, h, w),
        "logits": logits,
        "targets": torch.randint(0, c, (b, h, w), generator=g),
        "loss": torch.rand((), generator=g),
    }
    return {name: t.to(device) for name, t in batch.items()}


def _readings(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in META}


def _same(a: dict, b: dict) -> bool:
    """Equal dicts where NaN == NaN (NaN readings are data)."""
    if a.keys() != b.keys():
        return False
    return all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


# --- pure reductions ---------------------------------------------------------


def test_lora_norm_stats_hand_computed() -> None:
    delta = torch.zeros(3, 2, 2)
    delta[0, 0, 0], delta[0, 1, 1] = 3.0, 4.0  # norm 5
    delta[1, 0, 1] = -1.0  # norm 1
    mean, mx = lora_norm_stats(delta)  # third sample: norm 0
    assert mean.dim() == 0 and mean.item() == pytest.approx(2.0) and mx.item() == 5.0


def test_stop_logit_variance_population() -> None:
    v = stop_logit_variance(torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True))
    assert v.item() == pytest.approx(1.25) and not v.requires_grad


def test_attention_stats_entropy_in_nats() -> None:
    att = torch.zeros(2, 2, 2, 2)
    att[0, 0] = 0.25  # uniform over 4 pixels: ln 4
    att[0, 1, 0, 0] = 1.0  # one-hot: 0
    att[1, 0] = torch.tensor([[2.0, 2.0], [0.0, 0.0]])  # unnormalised, uniform over 2: ln 2
    # att[1, 1] all zeros: entropy 0 by convention
    mx, ent = attention_stats(att)
    assert mx.item() == 2.0
    assert ent.item() == pytest.approx((math.log(4) + math.log(2)) / 4, rel=1e-6)


def test_logit_range_and_accuracy_class_dims() -> None:
    logits = torch.tensor([[[5.0, 0.0], [-7.0, 1.0]], [[0.0, 9.0], [2.0, 0.5]]])  # (B=2, N=2, C=2)
    mn, mx = logit_range(logits)
    assert (mn.item(), mx.item()) == (-7.0, 9.0)
    targets = torch.tensor([[0, 1], [1, 1]])  # preds: [[0,1],[1,0]] -> 3/4
    assert batch_accuracy(logits, targets, class_dim=-1).item() == pytest.approx(0.75)
    assert batch_accuracy(logits, torch.tensor([[0, -100], [1, 1]]), -1, ignore_index=-100).item() == (
        pytest.approx(2 / 3)
    )
    assert math.isnan(batch_accuracy(logits, torch.full((2, 2), -100), -1, ignore_index=-100).item())
    # ignore_index that is also a class id: correct predictions of ignored pixels must not count
    assert batch_accuracy(logits, targets, -1, ignore_index=0).item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="targets"):
        batch_accuracy(logits, targets[:, 0], class_dim=-1)


def test_batch_accuracy_bchw_default_class_dim() -> None:
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = 1.0  # predict class 2 everywhere
    targets = torch.tensor([[[2, 2], [0, 2]]])
    assert batch_accuracy(logits, targets).item() == pytest.approx(0.75)


def test_nonfinite_count_across_tensors() -> None:
    a = torch.tensor([1.0, float("nan"), float("inf")])
    b = torch.tensor([[float("-inf"), 0.0]])
    n = nonfinite_count(a, b, torch.arange(3))
    assert n.dtype == torch.float32 and n.item() == 3.0
    with pytest.raises(ValueError):
        nonfinite_count()


def test_item_readings_keys_and_values() -> None:
    b = _batch()
    r = item_readings(**b, grad_norm=2.5)
    assert list(r) == [name for name in READINGS if "preclamp" not in name]  # no pre-clamp norms given
    mean, mx = lora_norm_stats(b["lora_delta"])
    assert r["lora_norm_mean"] == mean.item() and r["lora_norm_max"] == mx.item()
    assert r["loss"] == b["loss"].item() and r["grad_norm"] == 2.5 and r["nan_count"] == 0.0
    assert r["stop_logit_var"] == pytest.approx(b["stop_logits"].var(unbiased=False).item())
    assert r["attention_max"] == b["attention"].max().item()
    assert item_readings(logits=b["logits"]).keys() == {"logit_min", "logit_max", "nan_count"}
    assert item_readings(loss=1.5) == {"loss": 1.5}


# --- collector, CPU path -----------------------------------------------------


def test_collector_matches_item_readings_cpu() -> None:
    col = DiagnosticsCollector()
    batches = [_batch(seed=s) for s in range(3)]
    for step, b in enumerate(batches):
        col.collect(step, epoch=1, rank=2, **b, grad_norm=torch.tensor(0.5 + step), extra={"lr": 1e-3})
    out = col.poll()
    assert [r["step"] for r in out] == [0, 1, 2]
    for step, (rec, b) in enumerate(zip(out, batches)):
        assert (rec["epoch"], rec["rank"], rec["extra"]) == (1, 2, {"lr": 1e-3})
        expected = item_readings(**b, grad_norm=torch.tensor(0.5 + step))
        assert _same(_readings(rec), expected)
        assert list(_readings(rec)) == [name for name in READINGS if "preclamp" not in name]
    assert col.poll() == [] and col.pending == 0


def test_collector_leaves_out_missing_readings() -> None:
    col = DiagnosticsCollector()
    col.collect(7, 0, stop_logits=torch.tensor([[1.0, 3.0]]), loss=0.25)
    (rec,) = col.drain()
    assert rec == {"step": 7, "epoch": 0, "rank": 0, "stop_logit_var": 1.0, "stop_logit_mean": 2.0,
                   "stop_logit_abs_mean": 2.0, "stop_prob_mean": pytest.approx((1 / (1 + math.exp(-1)) + 1 / (
                       1 + math.exp(-3))) / 2), "loss": 0.25, "nan_count": 0.0, "extra": {}}


def test_collector_nan_and_inf_propagate() -> None:
    b = _batch()
    b["logits"][0, 0, 0, 0] = float("nan")
    b["lora_delta"][1, 0, 0] = float("inf")
    b["loss"] = torch.tensor(float("nan"))
    col = DiagnosticsCollector()
    col.collect(0, 0, **b, extra={"x": torch.tensor(float("-inf"))})
    (rec,) = col.drain()
    assert math.isnan(rec["logit_min"]) and math.isnan(rec["logit_max"]) and math.isnan(rec["loss"])
    assert rec["lora_norm_max"] == math.inf and rec["lora_norm_mean"] == math.inf
    assert rec["nan_count"] == 3.0 and rec["extra"]["x"] == -math.inf
    assert _same(_readings(rec), item_readings(**b))


def test_collect_does_not_read_tensors_on_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_: object) -> None:
        raise AssertionError("host read of a tensor value during collect")

    col = DiagnosticsCollector(max_pending=100)
    b = _batch()
    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    monkeypatch.setattr(torch.Tensor, "tolist", forbidden)
    monkeypatch.setattr(torch.Tensor, "__bool__", forbidden)
    col.collect(0, 0, **b, extra={"t": torch.tensor(2.0)})
    monkeypatch.undo()
    assert col.drain()[0]["extra"] == {"t": 2.0}


def test_sink_receives_records_and_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[dict] = []
    col = DiagnosticsCollector(sink=seen.append)
    col.collect(0, 0, loss=torch.tensor(1.0))
    col.collect(1, 0, loss=torch.tensor(2.0))
    assert [r["loss"] for r in seen] == [1.0, 2.0]  # collect polled opportunistically
    assert col.drain() == [] and len(seen) == 2

    def broken(_: dict) -> None:
        raise RuntimeError("monitor down")

    col = DiagnosticsCollector(sink=broken)
    with caplog.at_level(logging.ERROR, logger=collector_module.__name__):
        col.collect(3, 0, loss=1.0)
    assert "sink failed" in caplog.text


def test_max_pending_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DiagnosticsCollector(max_pending=0)


# --- collector queue logic with controllable (fake) events -------------------


class FakeEvent:
    """Stands in for torch.cuda.Event: completion is controlled by the test."""

    def __init__(self) -> None:
        self.done = False
        self.sync_calls = 0

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.sync_calls += 1
        self.done = True


class FakeAsyncCollector(DiagnosticsCollector):
    """Runs the CUDA-path bookkeeping (slot ring, events, ordering) on plain CPU buffers."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.events: list[FakeEvent] = []  # event of each collected batch, in order

    def _new_slot(self, capacity: int) -> collector_module._Slot:
        return collector_module._Slot(torch.empty(capacity), FakeEvent())

    def _launch(self, item: collector_module._Pending, dev: list[torch.Tensor]) -> None:
        stacked = torch.stack(dev)
        slot = self._take_slot(stacked.numel())
        slot.host[: stacked.numel()].copy_(stacked)
        slot.event = FakeEvent()  # fresh per batch so the test can address each batch's event
        self.events.append(slot.event)
        item.slot = slot


def test_poll_never_syncs_and_keeps_order() -> None:
    col = FakeAsyncCollector(max_pending=10)
    for step in range(4):
        col.collect(step, 0, loss=torch.tensor(float(step)))
    assert col.poll() == []
    col.events[1].done = True  # out of order completion: step 1 must wait behind step 0
    assert col.poll() == []
    col.events[0].done = True
    assert [(r["step"], r["loss"]) for r in col.poll()] == [(0, 0.0), (1, 1.0)]
    assert sum(e.sync_calls for e in col.events) == 0
    assert col.pending == 2


def test_drain_returns_everything_in_order() -> None:
    col = FakeAsyncCollector(max_pending=10)
    for step in range(5):
        col.collect(step, 3, logits=torch.full((1, 2), float(step)))
    out = col.drain()
    assert [(r["step"], r["epoch"], r["logit_max"]) for r in out] == [(s, 3, float(s)) for s in range(5)]
    assert col.pending == 0 and col.drain() == []


def test_max_pending_waits_on_oldest_only_and_reuses_buffers() -> None:
    col = FakeAsyncCollector(max_pending=3)
    for step in range(3):
        col.collect(step, 0, loss=torch.tensor(float(step)))
    assert col.pending == 3 and all(e.sync_calls == 0 for e in col.events)
    col.collect(3, 0, loss=torch.tensor(3.0))  # 4 > 3 pending: wait on step 0 only
    assert col.pending == 3
    assert [e.sync_calls for e in col.events] == [1, 0, 0, 0]
    for step in range(4, 20):
        col.collect(step, 0, loss=torch.tensor(float(step)))
        assert col.pending <= 3
    assert col.slots_allocated == 4  # ring: max_pending + 1 buffers, then reuse
    out = col.poll() + col.drain()
    assert [r["loss"] for r in out] == [float(s) for s in range(20)]


# --- collector, CUDA path ----------------------------------------------------


@needs_cuda
def test_cuda_collector_matches_item_readings_without_sync() -> None:
    col = DiagnosticsCollector(max_pending=8)
    batches = [_batch("cuda", seed=s) for s in range(20)]
    col.collect(-1, 0, **batches[0], extra={"warm": torch.tensor(1.0, device="cuda")})  # warm-up allocs
    col.drain()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, b in enumerate(batches):
            col.collect(step, 0, **b, extra={"lr": 0.1, "t": b["loss"] * 2})
            col.poll()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert col.slots_allocated <= 9
    assert all(s.host.is_pinned() for s in col._free)


@needs_cuda
def test_cuda_collector_values_order_and_drain() -> None:
    col = DiagnosticsCollector(max_pending=4)
    batches = [_batch("cuda", seed=s) for s in range(10)]
    batches[3]["logits"][0, 0, 0, 0] = float("nan")
    for step, b in enumerate(batches):
        col.collect(step, 1, **b, extra={"t": b["loss"] * 2})
        assert col.pending <= 4
    out = col.poll() + col.drain()
    assert [r["step"] for r in out] == list(range(10))
    for rec, b in zip(out, batches):
        assert _same(_readings(rec), item_readings(**b))
        assert rec["extra"]["t"] == (b["loss"] * 2).item()
    assert out[3]["nan_count"] == 1.0 and math.isnan(out[3]["logit_max"])


# --- issue 18: size-free attention readings, LoRA delta dicts, stop readings -----------


def _uniform(b: int, k: int, h: int, w: int) -> torch.Tensor:
    return torch.full((b, k, h, w), 1.0 / (h * w))


@pytest.mark.parametrize("size", [3, 30])
def test_uniform_map_reads_peak_ratio_one_and_entropy_norm_one_at_any_size(size: int) -> None:
    r = item_readings(attention=_uniform(2, 3, size, size))
    assert r["attention_peak_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert r["attention_entropy_norm"] == pytest.approx(1.0, rel=1e-5)
    assert r["attention_max"] == pytest.approx(1 / size**2) and r["attention_max_mean"] == pytest.approx(1 / size**2)
    assert r["attention_entropy"] == pytest.approx(math.log(size**2), rel=1e-5)


def test_mixed_grid_sizes_in_one_batch_with_valid_mask() -> None:
    """A 3x3 grid and a 30x30 grid, both uniform on their real cells, padded to 30x30."""
    att = torch.zeros(2, 2, 30, 30)
    att[0, :, :3, :3] = 1 / 9
    att[0, :, 3:, :] = 0.5  # garbage in the padding must not count
    att[1] = 1 / 900
    mask = torch.zeros(2, 30, 30, dtype=torch.bool)
    mask[0, :3, :3] = True
    mask[1] = True
    r = item_readings(attention=att, attention_mask=mask)
    assert r["attention_peak_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert r["attention_entropy_norm"] == pytest.approx(1.0, rel=1e-5)
    assert r["attention_max"] == pytest.approx(1 / 9)
    assert r["attention_max_mean"] == pytest.approx((1 / 9 + 1 / 900) / 2)
    assert r["attention_entropy"] == pytest.approx((math.log(9) + math.log(900)) / 2, rel=1e-5)
    unmasked = item_readings(attention=att)  # without the mask the padding is read as attention
    assert unmasked["attention_max"] == 0.5


def test_peaked_maps_read_high_peak_ratio_and_low_entropy_norm() -> None:
    att = torch.zeros(2, 1, 4, 4)
    att[0, 0, 0, 0] = 1.0  # one-hot over 16 cells
    att[1, 0, :2, :2] = 0.25  # mass on 4 of 9 valid cells (3x3 grid)
    mask = torch.zeros(2, 4, 4)
    mask[0] = 1
    mask[1, :3, :3] = 1
    r = item_readings(attention=att, attention_mask=mask)
    assert r["attention_peak_ratio"] == pytest.approx((16 * 1.0 + 9 * 0.25) / 2)
    assert r["attention_entropy_norm"] == pytest.approx((0.0 + math.log(4) / math.log(9)) / 2, rel=1e-5)
    assert r["attention_max"] == 1.0 and r["attention_max_mean"] == pytest.approx((1.0 + 0.25) / 2)


def test_single_cell_and_empty_maps() -> None:
    """One valid cell: peak ratio 1, entropy norm 0 (nothing can spread); no valid cell: left out."""
    att = torch.ones(2, 1, 2, 2) / 4
    mask = torch.zeros(2, 2, 2)
    mask[0, 0, 0] = 1  # one cell
    r = item_readings(attention=att, attention_mask=mask)
    assert r["attention_peak_ratio"] == 1.0 and r["attention_entropy_norm"] == 0.0
    assert r["attention_max_mean"] == 0.25 and r["attention_max"] == 0.25
    assert item_readings(attention=torch.ones(1, 1, 1, 1))["attention_entropy_norm"] == 0.0


def test_attention_mask_of_the_wrong_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="valid_mask"):
        item_readings(attention=_uniform(2, 3, 3, 3), attention_mask=torch.ones(2, 4, 4))


def _rlan_deltas(b: int = 3, d: int = 4) -> dict[str, torch.Tensor]:
    """The structure RLAN's HyperLoRA returns: four (B, D, D) deltas, a context and a scalar loss."""
    g = torch.Generator().manual_seed(5)
    out: dict[str, torch.Tensor] = {name: torch.randn(b, d, d, generator=g) * (i + 1)
                                    for i, name in enumerate(("gru_reset", "gru_update", "gru_candidate",
                                                              "output_head"))}
    out["context"] = torch.randn(b, d, generator=g) * 100  # not a delta: must not count
    out["delta_reg_loss"] = torch.tensor(7.0)
    return out


def test_lora_delta_dict_matrix_entries_only_with_per_delta_norms() -> None:
    deltas = _rlan_deltas()
    r = item_readings(lora_delta=deltas)
    names = ("gru_reset", "gru_update", "gru_candidate", "output_head")
    norms = torch.cat([deltas[n].flatten(1).norm(dim=1) for n in names])
    assert r["lora_norm_mean"] == pytest.approx(norms.mean().item(), rel=1e-6)
    assert r["lora_norm_max"] == pytest.approx(norms.max().item(), rel=1e-6)
    for n in names:
        assert r[f"lora_norm_{n}"] == pytest.approx(deltas[n].flatten(1).norm(dim=1).mean().item(), rel=1e-6)
    assert "lora_norm_context" not in r and "lora_norm_delta_reg_loss" not in r
    deltas["context"][0, 0] = float("nan")
    assert item_readings(lora_delta=deltas)["nan_count"] == 1.0  # every tensor is checked for NaN


def test_collector_sends_per_delta_norms_as_extra() -> None:
    col = DiagnosticsCollector()
    col.collect(0, 0, lora_delta=_rlan_deltas(), extra={"lr": 0.1})
    (rec,) = col.drain()
    assert set(rec["extra"]) == {"lr", "lora_norm_gru_reset", "lora_norm_gru_update", "lora_norm_gru_candidate",
                                 "lora_norm_output_head"}
    assert "lora_norm_mean" in rec and "lora_norm_gru_reset" not in rec


def test_preclamp_norms_from_the_clamp_show_what_the_clamped_norm_hides() -> None:
    from trainer_client.stability import clamp_lora_delta_norm

    delta = torch.zeros(2, 2, 2)
    delta[0, 0, 0], delta[1, 1, 1] = 5.0, 0.5
    clamped, pre = clamp_lora_delta_norm(delta, max_norm=1.0, return_norms=True)
    assert pre.tolist() == [5.0, 0.5] and not pre.requires_grad
    r = item_readings(lora_delta=clamped, lora_preclamp_norms=pre)
    assert r["lora_norm_max"] == pytest.approx(1.0)  # sits at the clamp value
    assert r["lora_norm_preclamp_max"] == 5.0 and r["lora_norm_preclamp_mean"] == 2.75
    dict_pre = {"gru_reset": pre, "output_head": torch.tensor([9.0, 1.0])}
    assert item_readings(lora_preclamp_norms=dict_pre)["lora_norm_preclamp_max"] == 9.0


def test_stop_readings_tell_the_healthy_start_from_saturation() -> None:
    g = torch.Generator().manual_seed(0)
    healthy = -1.0 + 0.1 * torch.randn(64, 3, generator=g)  # RLAN's stop head at initialisation
    r = item_readings(stop_logits=healthy)
    assert r["stop_logit_var"] < 0.05 and r["stop_logit_mean"] == pytest.approx(-1.0, abs=0.05)
    assert r["stop_logit_abs_mean"] == pytest.approx(1.0, abs=0.05)
    assert r["stop_prob_mean"] == pytest.approx(1 / (1 + math.e), abs=0.02)
    saturated = item_readings(stop_logits=torch.full((4, 3), 3.1))
    assert saturated["stop_logit_mean"] == pytest.approx(3.1) and saturated["stop_prob_mean"] > 0.95
    both_ways = item_readings(stop_logits=torch.tensor([[6.0, -6.0]]))
    assert both_ways["stop_logit_mean"] == 0.0 and both_ways["stop_logit_abs_mean"] == 6.0


def test_collect_never_raises_and_says_what_it_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """Dict deltas without matrices, (B, H, W, C) logits, list extras, wrong dtypes: skip, log once, count."""
    b = _batch()
    col = DiagnosticsCollector()
    bhwc = b["logits"].permute(0, 2, 3, 1).contiguous()[:, :, :, :7]  # (B, H, W, C) with C != H
    with caplog.at_level(logging.WARNING, logger=collector_module.__name__):
        for step in range(3):
            col.collect(step, 0, lora_delta={"context": torch.ones(4, 8), "delta_reg_loss": torch.tensor(1.0)},
                        logits=bhwc, targets=b["targets"], stop_logits=["not", "a", "tensor"],
                        attention=b["attention"], loss=b["loss"], extra={"per_clue": [0.1, 0.2], "lr": 0.5})
    out = col.drain()
    assert [r["step"] for r in out] == [0, 1, 2]
    for rec in out:
        assert rec["extra"] == {"lr": 0.5, "diagnostics_skipped": 4.0}
        assert {"attention_max", "logit_min", "logit_max", "loss", "nan_count"} <= rec.keys()
        assert not {"accuracy", "lora_norm_mean", "stop_logit_var"} & rec.keys()
    assert col.stats()["skipped"] == 12
    assert set(col.stats()["skipped_kinds"]) == {"lora_norm: ValueError", "accuracy: ValueError",
                                                 "stop_logit: AttributeError", "extra.per_clue: TypeError"}
    assert caplog.text.count("reading skipped") == 4  # once per kind, not once per batch
    col.collect(9, 0, loss=torch.tensor(1.0), extra=object())  # type: ignore[arg-type]
    assert col.stats()["skipped_kinds"]["batch: AttributeError"] == 1 and col.drain() == []


def test_ignore_index_per_call_overrides_the_collector() -> None:
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1] = 1.0  # predicts class 1 everywhere
    targets = torch.tensor([[[1, -100]]])
    col = DiagnosticsCollector()
    col.collect(0, 0, logits=logits, targets=targets, ignore_index=-100)
    col.collect(1, 0, logits=logits, targets=targets)
    first, second = col.drain()
    assert first["accuracy"] == 1.0 and second["accuracy"] == 0.5


@needs_cuda
def test_cuda_masked_attention_and_lora_dict_without_sync() -> None:
    col = DiagnosticsCollector(max_pending=8)
    att = torch.rand(4, 3, 30, 30, device="cuda")
    mask = torch.zeros(4, 30, 30, dtype=torch.bool, device="cuda")
    mask[:, :5, :7] = True
    deltas = {k: v.cuda() for k, v in _rlan_deltas(4).items()}
    col.collect(-1, 0, attention=att, attention_mask=mask, lora_delta=deltas)
    col.drain()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        col.collect(0, 0, attention=att, attention_mask=mask, lora_delta=deltas,
                    stop_logits=torch.randn(4, 3, device="cuda"), lora_preclamp_norms=torch.rand(4, device="cuda"))
        col.poll()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    (rec,) = col.drain()
    expected = item_readings(attention=att, attention_mask=mask, lora_delta=deltas)
    for name in ("attention_peak_ratio", "attention_entropy_norm", "attention_max_mean", "lora_norm_max"):
        assert rec[name] == pytest.approx(expected[name], rel=1e-5)
    assert rec["extra"]["lora_norm_gru_reset"] == pytest.approx(expected["lora_norm_gru_reset"], rel=1e-5)
