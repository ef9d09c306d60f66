"""Latency statistics shared by our side and the peer scripts (stdlib only: the peers venv imports it)."""

from __future__ import annotations

import time
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[index])


def summarise_ns(samples_ns: Sequence[int], unit: str = "us") -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean of nanosecond samples, in ``unit`` (us or ms)."""
    scale = {"us": 1e3, "ms": 1e6}[unit]
    ordered = sorted(samples_ns)
    out = {f"p{q:g}_{unit}": percentile(ordered, q) / scale for q in (50, 90, 99, 99.9)}
    out[f"max_{unit}"] = (ordered[-1] / scale) if ordered else float("nan")
    out[f"mean_{unit}"] = (sum(ordered) / len(ordered) / scale) if ordered else float("nan")
    out["n"] = len(ordered)
    return out


def timer_overhead_ns(n: int = 100_000) -> float:
    """Median cost of an empty ``perf_counter_ns`` pair: the floor under every per-call sample."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t0 = clock()
        samples.append(clock() - t0)
    samples.sort()
    return float(samples[len(samples) // 2])
