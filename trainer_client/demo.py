"""End-to-end demo: a small RLAN-like trainer reporting to the monitor and obeying its gate.

    python -m trainer_client.demo --url http://127.0.0.1:8765 --token T --run-id demo-1 [--collapse]

Every batch streams real diagnostics (``DiagnosticsCollector`` -> ``MonitorClient.log``);
every epoch sends a summary, asks the ``EscalationGate`` and escalates difficulty only
while the answer is *continue*. ``--collapse`` injects the documented collapse at
``--collapse-epoch`` so the monitor's pause (and its alert) shows within a minute on CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from trainer_client.client import MonitorClient
from trainer_client.diagnostics import DiagnosticsCollector
from trainer_client.demo_model import Forward, GridTasks, ModelConfig, RLANLike
from trainer_client.gate import EscalationGate, GateDecision
from trainer_client.stability import clue_diversity_loss, lora_norm_regularization

GRAD_EXPLOSION_NORM = 100.0  # pre-clip gradient norm counted as an explosion (and an LR back-off)
MIN_LR = 1e-5


@dataclass
class EpochStats:
    """What one epoch's summary reports."""

    loss: float = 0.0
    accuracy: float = 0.0
    grad_explosion_events: int = 0
    lr_backoff_events: int = 0
    max_nan_streak: int = 0
    steps: int = 0


@dataclass
class DemoTrainer:
    """Training loop state; ``net`` may wrap ``model`` (e.g. DistributedDataParallel)."""

    model: RLANLike
    tasks: GridTasks
    batch_size: int = 32
    lr: float = 3e-3
    rank: int = 0
    difficulty: float = 0.1
    escalation_weight: float = 1.0
    step: int = 0
    net: nn.Module | None = None
    optimizer: torch.optim.Optimizer = field(init=False)

    def __post_init__(self) -> None:
        if self.net is None:
            self.net = self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)

    def train_epoch(self, epoch: int, steps: int, collect: Callable[..., None]) -> EpochStats:
        """``steps`` batches; ``collect`` is ``DiagnosticsCollector.collect`` (or any sink)."""
        stats, nan_streak, correct = EpochStats(), 0, 0.0
        for _ in range(steps):
            x, y, hard = self.tasks.batch(self.batch_size, self.difficulty)
            out: Forward = self.net(x)
            loss = self._loss(out, y, hard)
            finite = bool(torch.isfinite(loss))
            nan_streak = 0 if finite else nan_streak + 1
            stats.max_nan_streak = max(stats.max_nan_streak, nan_streak)
            self.optimizer.zero_grad(set_to_none=True)
            grad_norm = torch.tensor(math.nan)
            if finite:
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self._check_explosion(float(grad_norm), stats)
                self.optimizer.step()
            collect(self.step, epoch, lora_delta=out.lora_delta, stop_logits=out.stop_logits,
                    attention=out.attention, logits=out.logits, targets=y, loss=loss.detach(),
                    grad_norm=grad_norm, rank=self.rank,
                    extra={"difficulty": self.difficulty, "escalation_weight": self.escalation_weight,
                           "lr": self.optimizer.param_groups[0]["lr"]})
            stats.loss += float(loss.detach()) / steps
            correct += float((out.logits.argmax(1) == y).float().mean()) / steps
            self.step += 1
            stats.steps += 1
        stats.accuracy = correct
        return stats

    def _loss(self, out: Forward, targets: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        """Per-sample CE (hard samples weighted by the escalation weight) + the RLAN regularisers."""
        ce = F.cross_entropy(out.logits, targets, reduction="none").mean(dim=(1, 2))
        weights = 1.0 + hard.float() * (self.escalation_weight - 1.0)  # stays on the batch's device
        return ((ce * weights).mean() + lora_norm_regularization(out.lora_delta)
                + 0.05 * clue_diversity_loss(out.attention))

    def _check_explosion(self, grad_norm: float, stats: EpochStats) -> None:
        """The trainer's own guard: count explosions and back the LR off on each."""
        if not math.isfinite(grad_norm) or grad_norm > GRAD_EXPLOSION_NORM:
            stats.grad_explosion_events += 1
            stats.lr_backoff_events += 1
            self.scale_lr(0.5)

    def scale_lr(self, factor: float) -> None:
        """Back the learning rate off (never below MIN_LR, so training can recover)."""
        for group in self.optimizer.param_groups:
            group["lr"] = max(group["lr"] * factor, MIN_LR)

    @torch.no_grad()
    def evaluate(self, eval_set: tuple[torch.Tensor, torch.Tensor]) -> float:
        """Cell accuracy on a fixed held-out set."""
        x, y = eval_set
        return float((self.net(x).logits.argmax(1) == y).float().mean())

    def escalate(self) -> None:
        """One meta-escalation step: more hard samples, weighted more."""
        self.difficulty = min(1.0, self.difficulty + 0.15)
        self.escalation_weight = min(4.0, self.escalation_weight * 1.25)

    def apply_actions(self, decision: GateDecision) -> list[str]:
        """Apply the monitor's recommended remedies; returns what was done."""
        done = []
        for action in decision.actions:
            if action.get("action") == "scale_learning_rate":
                self.scale_lr(float(action.get("factor", 0.5)))
                done.append(f"lr x{action.get('factor')}")
            elif action.get("action") == "scale_hyperlora_delta":
                self.model.hyper_gain *= float(action.get("factor", 0.5))
                done.append(f"lora delta x{action.get('factor')}")
        return done


def demo_config(args: argparse.Namespace, cfg: ModelConfig) -> dict[str, Any]:
    """The trainer YAML as a dict; the monitor reads its thresholds from it."""
    return {
        "model": {"colours": cfg.colours, "grid": cfg.grid, "dim": cfg.dim, "clues": cfg.clues},
        "hyper_lora": {"lora_max_norm": cfg.lora_max_norm, "rank": cfg.lora_rank},
        "recursive_solver": {"logit_clamp_threshold": cfg.logit_clamp_threshold, "steps": cfg.solver_steps},
        "meta_escalation": {"start_epoch": args.start_epoch, "accuracy_drop_threshold": 0.05,
                            "attention_collapse_threshold": 0.1},
        "training": {"epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                     "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "max_consecutive_nan_streak_per_epoch": 3, "max_grad_explosion_events_per_epoch": 5},
        # Short spans so a demo of a few dozen batches per epoch fires and resolves visibly.
        "monitor": {"batch_for": 3, "batch_resolve": 10, "epoch_for": 1, "epoch_resolve": 1,
                    "stop_var_warmup_steps": 20, "lora_growth_window_epochs": 2},
        "demo": {"collapse": args.collapse, "collapse_epoch": args.collapse_epoch},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer_client.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("MONITOR_URL", "http://127.0.0.1:8765"))
    parser.add_argument("--token", default=os.environ.get("MONITOR_TOKEN", ""))
    parser.add_argument("--run-id", default=f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--start-epoch", type=int, default=1, help="first epoch meta-escalation may run")
    parser.add_argument("--collapse", action="store_true", help="inject the documented collapse")
    parser.add_argument("--collapse-epoch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a tiny model runs best on 1)")
    parser.add_argument("--spill-dir", default=None, help="where undeliverable records wait (default ~/.cache)")
    parser.add_argument("--on-unreachable", choices=("pause", "continue"), default="pause")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or MONITOR_TOKEN) is required")
    return args


def run_demo(args: argparse.Namespace) -> int:
    """Train, report, obey the gate; prints one progress line per epoch."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, args.threads))
    cfg = ModelConfig()
    trainer = DemoTrainer(RLANLike(cfg), GridTasks(cfg.colours, cfg.grid, args.seed),
                          batch_size=args.batch_size, lr=args.lr)
    eval_x, eval_y, _ = GridTasks(cfg.colours, cfg.grid, args.seed + 10_000).batch(256, 0.5)
    client = MonitorClient(args.url, args.token, args.run_id, run_name=args.run_id, project="demo",
                           config=demo_config(args, cfg), escalation_start_epoch=args.start_epoch,
                           spill_dir=args.spill_dir)
    gate = EscalationGate(args.url, args.token, args.run_id, on_unreachable=args.on_unreachable)
    collector = DiagnosticsCollector(sink=client.log)
    print(f"dashboard: {args.url.rstrip('/')}/runs/{args.run_id}", flush=True)
    try:
        for epoch in range(args.epochs):
            if args.collapse and epoch == args.collapse_epoch:
                trainer.model.induce_collapse()
                print(f"epoch {epoch}: injecting collapse (LoRA clamp off, attention flattened)", flush=True)
            _run_epoch(trainer, epoch, args, collector, client, gate, (eval_x, eval_y))
    finally:
        collector.drain()
        client.close()
        gate.close()
    stats = client.stats()
    print(f"done: {stats['sent']} records sent, {stats['spilled']} spilled, {stats['dropped']} dropped; "
          f"final decision: {gate.decision().decision}", flush=True)
    return 0


def _run_epoch(trainer: DemoTrainer, epoch: int, args: argparse.Namespace, collector: DiagnosticsCollector,
               client: MonitorClient, gate: EscalationGate, eval_set: tuple[torch.Tensor, torch.Tensor]) -> None:
    """One epoch: train, summarise, ask the gate, escalate only on continue."""
    started = time.monotonic()
    stats = trainer.train_epoch(epoch, args.steps_per_epoch, collector.collect)
    collector.drain()
    eval_accuracy = trainer.evaluate(eval_set)
    client.epoch_end(epoch, eval_accuracy=eval_accuracy, train_accuracy=stats.accuracy,
                     grad_explosion_events=stats.grad_explosion_events,
                     lr_backoff_events=stats.lr_backoff_events, max_nan_streak=stats.max_nan_streak)
    may_escalate = gate.should_escalate(epoch=epoch)
    decision = gate.decision()
    if epoch >= args.start_epoch and may_escalate:
        trainer.escalate()
        action = f"escalated to difficulty {trainer.difficulty:.2f}"
    elif epoch >= args.start_epoch:
        applied = trainer.apply_actions(decision)
        action = "escalation held" + (f" ({', '.join(applied)})" if applied else "")
    else:
        action = "warm-up"
    print(f"epoch {epoch}: loss {stats.loss:.4f} acc {stats.accuracy:.3f} eval {eval_accuracy:.3f} "
          f"({time.monotonic() - started:.1f}s) decision {decision.summary()} -> {action}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_demo(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
