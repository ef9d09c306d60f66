"""GPU overhead of per-batch monitoring: training-step time of the demo RLAN-like model, three ways.

    python -m benchmarks.gpu_overhead [--device cuda|cpu] [--smoke] [--steps N] [--rounds R]

(a) ``none``: forward, loss, backward, clip, optimiser step -- no host sync anywhere;
(b) ``item``: plus the per-batch readings fetched with ``.item()``
    (``trainer_client.diagnostics.item_readings``: one host sync per reading);
(c) ``collector``: plus ``DiagnosticsCollector.collect`` (device-side reductions on a side
    CUDA stream, one async copy into pinned memory per batch, handed out when its CUDA
    event completes);
(d) ``collector_same_stream``: (c) with ``side_stream=False`` (the reductions queue on the
    training stream): shows what the side stream buys.

Why the method: the CPU queues GPU work asynchronously, so per-step host timers would
measure launch time, not GPU time. Each round synchronises only at its two ends (CUDA
events), after a warmup; modes are interleaved round by round (a, b, c, d, a, b, c, d, ...) so
clock/thermal drift hits all modes alike, and the median round is reported. Prints one
JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from trainer_client.demo_model import Forward, GridTasks, ModelConfig, RLANLike
from trainer_client.diagnostics import DiagnosticsCollector, item_readings
from trainer_client.stability import clue_diversity_loss, lora_norm_regularization

MODES = ("none", "item", "collector", "collector_same_stream")


@dataclass(frozen=True)
class Size:
    """Model and batch size; ``realistic`` is ARC-sized (30x30 grids, 10 colours), wider than the CPU demo."""

    colours: int
    grid: int
    dim: int
    clues: int
    lora_rank: int
    solver_steps: int
    batch: int


SIZES = {
    "realistic": Size(colours=10, grid=30, dim=256, clues=8, lora_rank=16, solver_steps=6, batch=64),
    "smoke": Size(colours=5, grid=8, dim=32, clues=3, lora_rank=4, solver_steps=3, batch=8),
}


@dataclass
class Bench:
    """Model, optimiser and a pool of device-resident batches (data loading is not what we measure)."""

    model: RLANLike
    optimizer: torch.optim.Optimizer
    batches: list[tuple[Tensor, Tensor]]
    device: torch.device
    amp: bool


def build(size: Size, device: torch.device, amp: bool, pool: int = 8, seed: int = 0) -> Bench:
    """The demo model at ``size`` on ``device`` with ``pool`` pre-made batches."""
    torch.manual_seed(seed)
    cfg = ModelConfig(colours=size.colours, grid=size.grid, dim=size.dim, clues=size.clues,
                      lora_rank=size.lora_rank, solver_steps=size.solver_steps)
    model = RLANLike(cfg).to(device)
    tasks = GridTasks(size.colours, size.grid, seed)
    batches = []
    for _ in range(pool):
        x, y, _hard = tasks.batch(size.batch, 0.3)
        batches.append((x.to(device), y.to(device)))
    return Bench(model, torch.optim.Adam(model.parameters(), lr=1e-3), batches, device, amp)


def train_step(bench: Bench, step: int) -> tuple[Forward, Tensor, Tensor, Tensor]:
    """One optimisation step with the demo's loss terms; reads nothing back to the host."""
    x, y = bench.batches[step % len(bench.batches)]
    with torch.autocast(bench.device.type, dtype=torch.bfloat16, enabled=bench.amp):
        out = bench.model(x)
        loss = (F.cross_entropy(out.logits.float(), y) + lora_norm_regularization(out.lora_delta)
                + 0.05 * clue_diversity_loss(out.attention))
    bench.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(bench.model.parameters(), 1.0)
    bench.optimizer.step()
    return out, loss.detach(), grad_norm, y


def monitor_hook(mode: str, sink: Callable[[dict], None]) -> tuple[Callable[..., None], Callable[[], None]]:
    """What runs after each step in ``mode``, and what finishes the round (drain pending readings)."""
    if mode == "none":
        return (lambda *args: None), (lambda: None)
    if mode == "item":
        def per_step(step: int, out: Forward, loss: Tensor, grad_norm: Tensor, y: Tensor) -> None:
            sink(item_readings(lora_delta=out.lora_delta, stop_logits=out.stop_logits, attention=out.attention,
                               logits=out.logits, targets=y, loss=loss, grad_norm=grad_norm))
        return per_step, (lambda: None)
    collector = DiagnosticsCollector(sink=sink, side_stream=mode == "collector")

    def collect(step: int, out: Forward, loss: Tensor, grad_norm: Tensor, y: Tensor) -> None:
        collector.collect(step, 0, lora_delta=out.lora_delta, stop_logits=out.stop_logits,
                          attention=out.attention, logits=out.logits, targets=y, loss=loss, grad_norm=grad_norm)
    return collect, collector.drain


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_round(bench: Bench, mode: str, steps: int, first_step: int, sink: Callable[[dict], None]) -> float:
    """Milliseconds per step over ``steps`` steps, synchronising only before and after."""
    per_step, finish = monitor_hook(mode, sink)
    _sync(bench.device)
    cuda = bench.device.type == "cuda"
    if cuda:
        start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start_event.record()
    start = time.perf_counter()
    for step in range(first_step, first_step + steps):
        per_step(step, *train_step(bench, step))
    finish()
    if cuda:
        end_event.record()
        end_event.synchronize()
        return start_event.elapsed_time(end_event) / steps
    return (time.perf_counter() - start) * 1000 / steps


def measure(bench: Bench, steps: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Warm every mode up, then interleave timed rounds of each mode; medians and ratios."""
    records: list[dict] = []
    sink = records.append
    for mode in MODES:
        time_round(bench, mode, warmup, 0, sink)
    per_round: dict[str, list[float]] = {mode: [] for mode in MODES}
    step = warmup
    for index in range(rounds):
        for mode in MODES:
            per_round[mode].append(time_round(bench, mode, steps, step, sink))
            step += steps
        print(f"[gpu_overhead] round {index + 1}/{rounds}: "
              + ", ".join(f"{m} {per_round[m][-1]:.3f} ms" for m in MODES), file=sys.stderr, flush=True)
    median = {mode: statistics.median(times) for mode, times in per_round.items()}
    return {
        "ms_per_step": median,
        "per_round_ms": per_round,
        "ratio_item_vs_none": median["item"] / median["none"],
        "ratio_collector_vs_none": median["collector"] / median["none"],
        "ratio_collector_same_stream_vs_none": median["collector_same_stream"] / median["none"],
        "records_collected": len(records),
    }


def device_info(device: torch.device) -> dict[str, Any]:
    """What ran it (the figures mean nothing without this)."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="default: realistic (smoke with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, few steps: checks the script runs")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default 200; smoke 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per mode first (default 30)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every mode (default 5)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for the forward pass")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 keeps a CPU run steady on a shared machine)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = SIZES[args.size or ("smoke" if args.smoke else "realistic")]
    steps = args.steps or (3 if args.smoke else 200)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 30)
    rounds = args.rounds or (1 if args.smoke else 5)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"[gpu_overhead] {device}: {size}, {rounds} rounds x {steps} steps (+{warmup} warmup)",
          file=sys.stderr, flush=True)
    bench = build(size, device, args.amp)
    result = {**device_info(device), "size": asdict(size), "amp": args.amp, "steps_per_round": steps,
              "warmup_steps": warmup, "rounds": rounds, **measure(bench, steps, warmup, rounds)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
