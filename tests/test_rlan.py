"""trainer_client.rlan: the RLAN adapter on RLAN-shaped outputs, its epoch mapping and config loader."""

from __future__ import annotations

import logging
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.support.service import LiveService
from trainer_client import MonitorClient
from trainer_client.rlan import RLANMonitor, load_rlan_config
from trainer_client.rlan_epoch import epoch_fields

SCI_ARC = Path("/work/.mirror/peymanrah+SCI-ARC/repo")
DELTAS = ("gru_reset", "gru_update", "gru_candidate", "output_head")


def rlan_outputs(b: int = 2, k: int = 3, h: int = 6, w: int = 6, d: int = 8, c: int = 10,
                 real: tuple[int, int] = (3, 3), seed: int = 0) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """A forward output shaped as RLAN returns it (return_intermediates=True), targets and input grid.

    Every sample's real grid is ``real`` (the rest padded: colour 10 in the input, -100 in the
    targets); attention is uniform over the real cells, as a DSC at a very high temperature gives.
    """
    g = torch.Generator().manual_seed(seed)
    grid = torch.full((b, h, w), 10)
    grid[:, : real[0], : real[1]] = torch.randint(0, 10, (b, *real), generator=g)
    targets = torch.full((b, h, w), -100)
    targets[:, : real[0], : real[1]] = torch.randint(0, 10, (b, *real), generator=g)
    valid = (grid != 10).float()
    attention = (valid / valid.sum(dim=(1, 2), keepdim=True)).unsqueeze(1).expand(b, k, h, w).clone()
    deltas: dict[str, torch.Tensor] = {name: 0.1 * torch.randn(b, d, d, generator=g) for name in DELTAS}
    deltas["context"] = torch.randn(b, d, generator=g)
    deltas["delta_reg_loss"] = torch.tensor(0.01)
    outputs = {"logits": torch.randn(b, c, h, w, generator=g), "all_logits": [torch.randn(b, c, h, w)],
               "centroids": torch.rand(b, k, 2), "attention_maps": attention,
               "stop_logits": -1.0 + 0.1 * torch.randn(b, k, generator=g), "predicates": torch.zeros(b, 8),
               "features": torch.randn(b, d, h, w), "lora_deltas": deltas}
    return outputs, targets, grid


class Sink:
    """Stands in for MonitorClient in unit tests of the adapter: records what it is given."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.epochs: list[tuple[tuple, dict]] = []

    def log(self, record: dict) -> None:
        self.records.append(record)

    def epoch_end(self, *args: Any, **kwargs: Any) -> str:
        self.epochs.append((args, kwargs))
        return "continue"


def test_batch_reads_the_forward_output_as_is() -> None:
    sink = Sink()
    monitor = RLANMonitor(sink, start_step=100)
    outputs, targets, grid = rlan_outputs()
    monitor.batch(outputs, targets, epoch=4, loss=torch.tensor(0.7), grad_norm=1.5, input_grid=grid,
                  delta_scale=0.05, lr=1e-4)
    monitor.batch(None, None, epoch=4)  # a batch skipped before forward still counts a step
    monitor.close()
    first, second = sink.records
    assert (first["step"], first["epoch"], second["step"]) == (100, 4, 101)
    # attention uniform on the 3x3 real cells of a 6x6 padded grid: size-free readings say "uniform"
    assert first["attention_peak_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert first["attention_entropy_norm"] == pytest.approx(1.0, rel=1e-5)
    assert first["attention_max_mean"] == pytest.approx(1 / 9)
    norms = torch.cat([outputs["lora_deltas"][n].flatten(1).norm(dim=1) for n in DELTAS])
    assert first["lora_norm_max"] == pytest.approx(norms.max().item(), rel=1e-6)
    assert first["stop_logit_mean"] == pytest.approx(-1.0, abs=0.2) and first["stop_prob_mean"] < 0.35
    expected_acc = (outputs["logits"].argmax(1) == targets)[targets != -100].float().mean().item()
    assert first["accuracy"] == pytest.approx(expected_acc)  # padding (-100) left out
    assert first["extra"]["hyperlora_delta_scale"] == 0.05 and first["extra"]["lr"] == 1e-4
    assert {f"lora_norm_{n}" for n in DELTAS} <= first["extra"].keys()
    assert "diagnostics_skipped" not in first["extra"]
    assert monitor.collector.stats()["skipped"] == 0


def test_batch_before_hyperlora_is_active_and_with_garbage_never_raises() -> None:
    sink = Sink()
    monitor = RLANMonitor(sink)
    outputs, targets, _ = rlan_outputs()
    del outputs["lora_deltas"]  # before meta_learning_start_epoch the model returns none
    monitor.batch(outputs, targets, epoch=0)
    monitor.batch({"logits": "nonsense", "attention_maps": [1, 2]}, targets, epoch=0, extra={"v": [1.0, 2.0]})
    monitor.close()
    assert len(sink.records) == 2 and "lora_norm_max" not in sink.records[0]
    assert sink.records[1]["extra"]["diagnostics_skipped"] >= 3


class ClampingHyperLoRA(nn.Module):
    """The interface the adapter relies on: a clamp method applied to each delta before it is returned."""

    def __init__(self, max_norm: float) -> None:
        super().__init__()
        self.max_norm = max_norm

    def _clamp_delta_norm(self, delta: torch.Tensor) -> torch.Tensor:
        norms = delta.flatten(1).norm(dim=1).clamp_min(self.max_norm)
        return delta * (self.max_norm / norms).view(-1, 1, 1)

    def forward(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: self._clamp_delta_norm(t) for name, t in raw.items()}


def test_watch_clamp_reports_the_pre_clamp_norm_the_output_hides() -> None:
    sink = Sink()
    monitor = RLANMonitor(sink)
    hyper = ClampingHyperLoRA(max_norm=1.0)
    monitor.watch_clamp(hyper)
    raw = {name: torch.zeros(2, 2, 2) for name in DELTAS}
    raw["gru_update"][0, 0, 0] = 5.0
    outputs, targets, _ = rlan_outputs(d=2)
    outputs["lora_deltas"] = hyper(raw)
    monitor.batch(outputs, targets, epoch=9)
    monitor.close()
    (rec,) = sink.records
    assert rec["lora_norm_max"] == pytest.approx(1.0)
    assert rec["lora_norm_preclamp_max"] == 5.0 and rec["lora_norm_preclamp_mean"] == pytest.approx(5.0 / 8)


def test_epoch_maps_the_trainers_dicts(caplog: pytest.LogCaptureFixture) -> None:
    diagnostics = {"attention_collapse_events_epoch": 2, "stop_predictor_weight_variance": 0.004,
                   "per_clue_entropy": [0.5, 0.7, 0.9], "batch_accuracies": [0.5] * 200,
                   "solved_task_ids": {"a", "b"}, "nan_attribution": {"x": 1},
                   **{f"zz_metric_{i:03d}": float(i) for i in range(80)}}
    train_losses = {"total_loss": 0.9, "nan_batches": 1, "max_consecutive_nan_streak": 1, "diagnostics": diagnostics}
    state = {"grad_explosion_events_epoch": 1, "lr_backoff_events_epoch": 0.0, "max_nan_streak_epoch": 1,
             "hyperlora_delta_scale_current": 0.05}
    evals = {"pixel_accuracy": 0.8, "task_accuracy": 0.1, "fg_accuracy": 0.6, "bg_accuracy": 0.9}
    sink = Sink()
    monitor = RLANMonitor(sink)
    with caplog.at_level(logging.INFO, logger="trainer_client.rlan"):
        for epoch in (5, 6):
            assert monitor.epoch(epoch, train_losses=train_losses, eval_metrics=evals, meta_escalation_state=state,
                                 clamp_stats={"hit_rate": 0.02, "max_pre_norm": 1.7}, train_accuracy=0.7) == "continue"
    (args, kwargs), _ = sink.epochs
    assert args == (5, 0)
    assert {k: kwargs[k] for k in ("eval_accuracy", "train_accuracy", "grad_explosion_events", "lr_backoff_events",
                                   "max_nan_streak")} == {"eval_accuracy": 0.8, "train_accuracy": 0.7,
                                                          "grad_explosion_events": 1, "lr_backoff_events": 0,
                                                          "max_nan_streak": 1}
    extra = kwargs["extra"]
    assert len(extra) == 64
    assert {"eval_pixel_accuracy": 0.8, "task_accuracy": 0.1, "fg_accuracy": 0.6, "hyperlora_delta_scale": 0.05,
            "clamp_hit_rate": 0.02, "clamp_max_pre_norm": 1.7, "attention_collapse_events_epoch": 2.0,
            "per_clue_entropy": [0.5, 0.7, 0.9]}.items() <= extra.items()
    assert caplog.text.count("batch_accuracies (a list of 200 numbers") == 1  # said once, not per epoch
    assert "solved_task_ids (not a number" in caplog.text and "more than 64 extras" in caplog.text


def test_epoch_without_eval_sends_no_eval_accuracy() -> None:
    mapped = epoch_fields(train_losses={"diagnostics": {}}, train_accuracy=float("nan"))
    assert set(mapped.fields) == {"train_accuracy"} and math.isnan(mapped.fields["train_accuracy"])
    assert mapped.extra == {}


def test_load_rlan_config_reads_the_real_layout_and_the_seed_layout(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("model:\n  hyperlora_max_norm: 1.0\ntraining:\n  meta_escalation:\n    enabled: true\n"
                    "    start_epoch: 25\n")
    run = load_rlan_config(real)
    assert run.escalation_start_epoch == 25 and run.config["model"]["hyperlora_max_norm"] == 1.0
    assert run.client_kwargs() == {"config": run.config, "escalation_start_epoch": 25}
    seed = tmp_path / "seed.yaml"
    seed.write_text("meta_escalation:\n  start_epoch: 3\n")
    assert load_rlan_config(seed).escalation_start_epoch == 3
    none = tmp_path / "none.yaml"
    none.write_text("model: {}\n")
    assert load_rlan_config(none).escalation_start_epoch is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_rlan_config(bad)


@pytest.mark.skipif(not SCI_ARC.exists(), reason="SCI-ARC mirror not present")
def test_load_rlan_config_on_the_shipped_rlan_stable_dev_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rlan_stable_dev.yaml"
    path.write_bytes(subprocess.check_output(["git", "-C", str(SCI_ARC), "show", "HEAD:configs/rlan_stable_dev.yaml"]))
    run = load_rlan_config(path)
    assert run.escalation_start_epoch == 25
    assert run.config["model"]["hyperlora_max_norm"] == 1.0


def test_adapter_against_the_real_service(sqlite_service: LiveService, tmp_path: Path) -> None:
    """Batches and an epoch through the real service. Before the storage merge the new readings
    arrive in extra (the client learns the older schema); after it, in their own columns."""
    client = MonitorClient(sqlite_service.base_url, sqlite_service.token, "rlan-live", spill_dir=tmp_path / "spill",
                           flush_interval=0.05, config={"training": {"meta_escalation": {"start_epoch": 2}}},
                           escalation_start_epoch=2)
    monitor = RLANMonitor(client)
    for _ in range(5):
        outputs, targets, grid = rlan_outputs(seed=monitor.step)
        monitor.batch(outputs, targets, epoch=0, loss=0.5, input_grid=grid, delta_scale=0.005)
    decision = monitor.epoch(0, train_losses={"diagnostics": {"per_clue_entropy": [0.1, 0.2, 0.3]}},
                             meta_escalation_state={"grad_explosion_events_epoch": 0}, train_accuracy=0.4, wait=20)
    assert client.flush(20)
    client.close()
    stats = client.stats()
    assert decision in ("continue", "pause") and stats["rejected"] == 0 and stats["dropped"] == 0
    rows = sqlite_service.client.get("/api/v1/runs/rlan-live/diagnostics").json()
    rows = rows if isinstance(rows, list) else rows["records"]
    assert len(rows) == 5
    for row in rows:
        ratio = row.get("attention_peak_ratio")
        if ratio is None:  # service without the issue-18 columns
            assert "attention_peak_ratio" in stats["refused_fields"]
            ratio = row["extra"]["attention_peak_ratio"]
        assert ratio == pytest.approx(1.0, rel=1e-5)
        assert row["extra"]["hyperlora_delta_scale"] == pytest.approx(0.005)


DATA = Path(__file__).parent / "data" / "sciarc"


def test_adapter_on_the_real_forward_output_sample() -> None:
    """A forward output recorded from the real RLAN model (tiny CPU run): a 6x6 grid padded to 7x7."""
    sample = torch.load(DATA / "forward_sample_healthy.pt", weights_only=True)
    meta = sample.pop("meta")
    grid, targets = sample.pop("test_inputs"), sample.pop("test_outputs")
    sink = Sink()
    monitor = RLANMonitor(sink, pad_color=meta["pad_color"], ignore_index=meta["ignore_index"])
    monitor.batch(sample, targets, epoch=0, loss=2.5, input_grid=grid, delta_scale=meta["hyperlora_delta_scale"])
    monitor.close()
    (rec,) = sink.records
    assert monitor.collector.stats()["skipped"] == 0
    # independent oracle: plain torch over the real cells only
    valid = (grid != meta["pad_color"]).flatten(1)  # (1, 49), 36 real cells
    maps = sample["attention_maps"].flatten(2)[:, :, valid[0]]  # (1, K, 36)
    p = maps / maps.sum(-1, keepdim=True)
    cells = valid.sum().item()
    assert cells == 36
    assert rec["attention_peak_ratio"] == pytest.approx((p.amax(-1) * cells).mean().item(), rel=1e-5)
    entropy = -(p * p.log()).sum(-1)
    assert rec["attention_entropy_norm"] == pytest.approx((entropy / math.log(cells)).mean().item(), rel=1e-5)
    assert rec["attention_max_mean"] == pytest.approx(maps.amax(-1).mean().item(), rel=1e-6)
    assert 0.0 < rec["attention_entropy_norm"] <= 1.0 and rec["attention_peak_ratio"] >= 1.0
    norms = torch.cat([sample["lora_deltas"][n].flatten(1).norm(dim=1) for n in DELTAS])
    assert rec["lora_norm_max"] == pytest.approx(norms.max().item(), rel=1e-5)
    assert rec["lora_norm_max"] <= meta["lora_max_norm"]  # returned after the clamp
    real = targets != meta["ignore_index"]
    acc = (sample["logits"].argmax(1) == targets)[real].float().mean().item()
    assert rec["accuracy"] == pytest.approx(acc)
    stop = sample["stop_logits"]
    assert rec["stop_logit_mean"] == pytest.approx(stop.mean().item(), rel=1e-5)
    assert rec["stop_prob_mean"] == pytest.approx(torch.sigmoid(stop).mean().item(), rel=1e-5)
    assert rec["extra"]["hyperlora_delta_scale"] == 0.005
    assert rec["nan_count"] == 0.0
