"""The benchmark suite still runs end to end (tiny sizes, no peers). No timing assertions: CI is noisy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_smoke_run_writes_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    # Point at a missing peers venv: CI has none, and this keeps the test the same everywhere.
    env = {**os.environ, "BENCH_PEERS_VENV": str(tmp_path / "no-peers")}
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-6000:]}"
    body = json.loads(out.read_text())
    assert set(body["benchmarks"]) == set(NAMES)
    for name, result in body["benchmarks"].items():
        assert result["error"] is None, (name, result["error"])
        assert result["rows"], name
    assert any("peers skipped" in note for note in body["benchmarks"]["log_call"]["notes"])
    assert "log() p50" in done.stdout
