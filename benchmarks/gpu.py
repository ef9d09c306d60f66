"""(6) Runs ``benchmarks/gpu_overhead.py`` in a subprocess and turns its JSON into table rows.

On a machine without CUDA (this repo's CI and dev boxes) it runs on the CPU at the smoke
model size: that proves the script works, but the ratios are CPU figures, not GPU ones.
The GPU figures come from ``python -m benchmarks.gpu_overhead --device cuda`` on a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.common import REPO_ROOT, Result, Row, say
from benchmarks.sizes import Sizes


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def run(sizes: Sizes, workdir: Path, smoke: bool = False) -> Result:
    cuda = cuda_available()
    args = ["--device", "cuda" if cuda else "cpu"] + ([] if cuda else ["--threads", "1"])
    if smoke:
        args.append("--smoke")
    elif not cuda:
        args += ["--size", "smoke", "--steps", str(sizes.gpu_steps), "--rounds", str(sizes.gpu_rounds)]
    say(f"gpu_overhead {' '.join(args)}")
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_overhead", *args], cwd=REPO_ROOT,
                          stdout=subprocess.PIPE, timeout=3600, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    raw = json.loads(done.stdout.decode().strip().splitlines()[-1])
    result = Result("gpu_overhead", f"Training step of the demo model, {raw['device']} (ms/step)", raw=raw)
    labels = {"none": "(a) no monitoring", "item": "(b) .item() readings", "collector": "(c) DiagnosticsCollector",
              "collector_same_stream": "(d) DiagnosticsCollector, no side stream"}
    for mode, label in labels.items():
        result.rows.append(Row(f"step {label}", raw["ms_per_step"][mode], "ms"))
    result.rows.append(Row("(b)/(a) step-time ratio", raw["ratio_item_vs_none"], ""))
    result.rows.append(Row("(c)/(a) step-time ratio", raw["ratio_collector_vs_none"], "",
                           goal="<= 1.01", passed=raw["ratio_collector_vs_none"] <= 1.01 if cuda else None))
    result.rows.append(Row("(d)/(a) step-time ratio", raw["ratio_collector_same_stream_vs_none"], ""))
    if not cuda:
        result.notes.append("CPU stand-in at the smoke model size (no CUDA here): not the GPU overhead; "
                            "run `python -m benchmarks.gpu_overhead --device cuda` on a GPU")
    return result
