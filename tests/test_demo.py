"""The demo trainer end to end against the real service, plus its model's health invariants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tests.support.service import REPO_ROOT, LiveService
from trainer_client.demo_model import GridTasks, ModelConfig, RLANLike
from trainer_client.diagnostics import item_readings


def run_demo(service: LiveService, run_id: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trainer_client.demo", "--url", service.base_url, "--token", service.token,
               "--run-id", run_id, "--spill-dir", str(tmp_path / "spill"), *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_demo_streams_every_batch_and_exits_cleanly(sqlite_service: LiveService, tmp_path: Path) -> None:
    result = run_demo(sqlite_service, "demo-smoke", tmp_path, "--epochs", "2", "--steps-per-epoch", "10")
    assert result.returncode == 0, result.stderr
    assert f"{sqlite_service.base_url}/runs/demo-smoke" in result.stdout
    assert "epoch 1:" in result.stdout and "decision continue" in result.stdout
    run = sqlite_service.json("GET", "/api/v1/runs/demo-smoke")
    assert run["record_count"] == 20 and run["last_epoch"] == 1
    assert run["config"]["hyper_lora"]["lora_max_norm"] == 3.0
    assert run["config"]["meta_escalation"]["start_epoch"] == 1
    decision = sqlite_service.json("GET", "/escalation/decision", params={"run_id": "demo-smoke"})
    assert decision["decision"] == "continue"


def test_demo_collapse_leads_to_a_pause_and_holds_escalation(sqlite_service: LiveService, tmp_path: Path) -> None:
    result = run_demo(sqlite_service, "demo-collapse", tmp_path, "--epochs", "3", "--steps-per-epoch", "12",
                      "--collapse", "--collapse-epoch", "1")
    assert result.returncode == 0, result.stderr
    decision = sqlite_service.json("GET", "/escalation/decision", params={"run_id": "demo-collapse"})
    assert decision["decision"] == "pause"
    assert "attention_collapse" in [reason["rule"] for reason in decision["reasons"]]
    lines = result.stdout.splitlines()
    collapsed = [line for line in lines if line.startswith("epoch 2:")]
    assert collapsed and "decision pause" in collapsed[0] and "escalation held" in collapsed[0]
    assert not any("escalated" in line for line in lines if line.startswith("epoch 2:"))


def test_demo_model_is_healthy_until_collapse_is_injected() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig()
    model = RLANLike(cfg)
    x, y, hard = GridTasks(cfg.colours, cfg.grid, seed=1).batch(16, 0.5)
    assert x.shape == (16, cfg.colours + 1, cfg.grid, cfg.grid) and y.shape == (16, cfg.grid, cfg.grid)
    assert torch.all(model.stop_head[-1].bias == -2.0)
    out = model(x)
    assert out.lora_delta.shape == (16, cfg.dim, cfg.dim)
    assert out.attention.shape == (16, cfg.clues, cfg.grid, cfg.grid)
    assert out.stop_logits.shape == (16, cfg.clues)
    assert torch.allclose(out.attention.flatten(2).sum(-1), torch.ones(16, cfg.clues))
    healthy = item_readings(out.lora_delta, out.stop_logits, out.attention, out.logits, y)
    assert healthy["lora_norm_max"] < cfg.lora_max_norm and healthy["attention_max"] > 0.3
    model.induce_collapse()
    collapsed = item_readings(*(lambda o: (o.lora_delta, o.stop_logits, o.attention, o.logits))(model(x)), y)
    assert collapsed["attention_max"] < 0.1  # near-uniform clue maps: the documented collapse
    assert collapsed["lora_norm_max"] > 10 * healthy["lora_norm_max"]  # clamp off, hyper-net amplified
