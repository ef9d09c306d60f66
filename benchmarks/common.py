"""Plumbing every benchmark uses: progress on stderr, result rows, the peers' virtual environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PEERS_VENV = Path(os.environ.get("BENCH_PEERS_VENV", REPO_ROOT / "benchmarks" / ".venv-peers"))
_START = time.monotonic()


def say(message: str) -> None:
    """Progress line on stderr (stdout stays clean for the table / peer JSON)."""
    print(f"[bench {time.monotonic() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    """One line of the results table. ``better`` says which direction wins for the ratio."""

    metric: str
    ours: float | None
    unit: str
    peer: float | None = None
    peer_name: str | None = None
    better: str = "lower"  # "lower" or "higher"
    goal: str | None = None
    passed: bool | None = None

    @property
    def ratio(self) -> float | None:
        """How many times better we are than the peer (>1 means we win), direction-aware."""
        if self.ours is None or self.peer is None or self.ours <= 0 or self.peer <= 0:
            return None
        return self.peer / self.ours if self.better == "lower" else self.ours / self.peer

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class Result:
    """What one benchmark hands back: table rows, raw figures and notes for the JSON."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "rows": [r.to_dict() for r in self.rows],
                "raw": self.raw, "notes": self.notes, "seconds": round(self.seconds, 2), "error": self.error}


def goal_below(value: float | None, limit: float) -> bool | None:
    """Pass when value < limit (None when not measured)."""
    return None if value is None else value < limit


def peers_python() -> Path | None:
    """The peers venv's interpreter, or None when ``benchmarks/setup_peers.sh`` has not been run."""
    python = PEERS_VENV / "bin" / "python"
    return python if python.exists() else None


def run_peer(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m benchmarks.peers.<module>`` in the peers venv; its stdout is one JSON object."""
    python = peers_python()
    if python is None:
        raise RuntimeError("peers venv missing: run benchmarks/setup_peers.sh")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run([str(python), "-m", f"benchmarks.peers.{module}", *args], cwd=REPO_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=None, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peer {module} exited with {done.returncode}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])
