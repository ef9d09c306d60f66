"""Per-reading cost of the rule engine, early in a run and after 50,000 readings of history.

    python -m benchmarks.rules_history [--readings 20000]

Moved out of tests/test_rules_engine.py (issue 16.1): a timing comparison in a test fails
whenever the shared box is busy during one of the two blocks. The test keeps what can be
checked without a clock (rule memory stays bounded); this prints the figures, as JSON:
the best of 5 blocks of 200 readings, early and late, in microseconds per reading.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from monitor.rules import BatchReading, EpochReading, RuleEngine
from monitor.rules.ruleset import RuleSet

BLOCKS, BLOCK_SIZE = 5, 200


def synthetic(step: int) -> BatchReading:
    """Readings that keep every batch rule busy (growth, pending, resolving)."""
    wobble = (step * 7919) % 97 / 97.0
    return BatchReading(
        step=step, epoch=step // 25, rank=0, lora_norm_mean=1.2 + 0.3 * wobble, lora_norm_max=2.0 + wobble,
        stop_logit_var=0.3 + wobble, attention_max=0.05 + 0.9 * wobble, attention_entropy=3.0 + 2.5 * wobble,
        logit_min=-30.0 - 30 * wobble, logit_max=30.0 + 30 * wobble,
    )


def best_block_us(engine: RuleEngine, states: dict, start: int) -> float:
    """Microseconds per reading: the best of ``BLOCKS`` blocks (the least disturbed by other work)."""
    best = float("inf")
    for block in range(BLOCKS):
        begin = time.perf_counter()
        for step in range(start + block * BLOCK_SIZE, start + (block + 1) * BLOCK_SIZE):
            engine.evaluate_batch(states, synthetic(step))
        best = min(best, time.perf_counter() - begin)
    return best / BLOCK_SIZE * 1e6


def measure(readings: int) -> dict[str, float]:
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    early = best_block_us(engine, states, start=0)
    history_end = BLOCKS * BLOCK_SIZE + readings
    for step in range(BLOCKS * BLOCK_SIZE, history_end):
        engine.evaluate_batch(states, synthetic(step))
        if step % 25 == 0:
            engine.evaluate_epoch(states, EpochReading(epoch=step // 25, eval_accuracy=0.9, max_nan_streak=0))
    late = best_block_us(engine, states, start=history_end)
    return {"early_us_per_reading": early, "late_us_per_reading": late, "late_over_early": late / early,
            "history_readings": readings, "load_average": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=50_000)
    print(json.dumps(measure(parser.parse_args().readings), indent=1))


if __name__ == "__main__":
    main()
