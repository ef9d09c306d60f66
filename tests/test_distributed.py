"""Two DDP ranks (torch.distributed, gloo) report to one run; the worst rank decides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from tests.support.service import LiveService
from trainer_client import DiagnosticsCollector, MonitorClient
from trainer_client.demo import DemoTrainer
from trainer_client.demo_model import GridTasks, ModelConfig, RLANLike

WORLD_SIZE = 2
STEPS = 12
CONFIG = {"monitor": {"batch_for": 3, "batch_resolve": 10}, "meta_escalation": {"attention_collapse_threshold": 0.1}}


def _worker(rank: int, init_file: str, base_url: str, token: str, run_id: str, spill_dir: str) -> None:
    """One rank: DDP training of the demo model, streaming its own diagnostics with its rank."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = ModelConfig()
    model = RLANLike(cfg)
    if rank == 1:
        model.temperature = 200.0  # this rank's clue maps collapse to near-uniform
    trainer = DemoTrainer(model, GridTasks(cfg.colours, cfg.grid, seed=rank), batch_size=16, rank=rank,
                          net=DistributedDataParallel(model))
    client = MonitorClient(base_url, token, run_id, config=CONFIG, spill_dir=spill_dir, flush_interval=0.05)
    collector = DiagnosticsCollector(sink=client.log)
    stats = trainer.train_epoch(0, STEPS, collector.collect)
    collector.drain()
    accuracy = torch.tensor([stats.accuracy])
    dist.all_reduce(accuracy)  # the epoch summary carries the world-mean accuracy
    client.epoch_end(0, rank=rank, train_accuracy=float(accuracy) / WORLD_SIZE)
    delivered = client.flush(30)
    client.close()
    dist.barrier()
    dist.destroy_process_group()
    if not delivered or client.stats()["sent"] != STEPS:
        raise RuntimeError(f"rank {rank} did not deliver everything: {client.stats()}")


@pytest.mark.slow
def test_two_ranks_report_to_one_run_and_the_worst_rank_decides(
        sqlite_service: LiveService, tmp_path: Path) -> None:
    run_id = "ddp-run"
    mp.spawn(_worker, nprocs=WORLD_SIZE, join=True,
             args=(str(tmp_path / "dist-init"), sqlite_service.base_url, sqlite_service.token, run_id,
                   str(tmp_path / "spill")))
    run = sqlite_service.json("GET", f"/api/v1/runs/{run_id}")
    assert run["record_count"] == WORLD_SIZE * STEPS
    decision = sqlite_service.json("GET", "/escalation/decision", params={"run_id": run_id})
    assert decision["decision"] == "pause"
    assert decision["reasons"], decision
    assert {(r["rule"], r["rank"]) for r in decision["reasons"]} == {("attention_collapse", 1)}
    assert all(w["rank"] == 1 for w in decision["warnings"] if w["rule"].startswith("attention"))
