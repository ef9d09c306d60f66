"""A real trainer process that streams steps through MonitorClient, for fault tests.

Why a separate process: the guarantees under test (``log()`` never blocks, spill on
disk, replay by the next process, nothing lost when the *service* is SIGKILLed) are
about what a training process experiences, so the trainer must not share a
process, a GIL or an event loop with the test that kills things around it.

Run as ``python -m tests.support.trainer_proc --url ... --run-id ...``; it writes its
progress (steps logged so far) and, at the end, a JSON result with per-call timings
of ``log()`` and ``close()`` and the client's counters. :class:`TrainerProcess`
starts it and reads those files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTHY = {"loss": 0.3, "accuracy": 0.9, "attention_max": 0.7, "lora_norm_max": 1.5, "grad_norm": 1.2}
COLLAPSED = {**HEALTHY, "attention_max": 0.001}  # fires the attention-collapse rule
CLOSE_AFTER_LIMIT_S = 300.0  # a --close-after file never created must not keep a trainer forever


def _write_atomic(path: Path, body: dict[str, Any]) -> None:
    """Readers never see a half-written file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def _stream(client: Any, args: argparse.Namespace, progress: Path) -> list[float]:
    """Log ``args.steps`` steps at ``args.rate`` per second; returns each log() call's seconds."""
    readings = COLLAPSED if args.collapse else HEALTHY
    durations: list[float] = []
    started = time.monotonic()
    for index in range(args.steps):
        step = args.start + index
        before = time.perf_counter()
        client.log(step, step // args.steps_per_epoch, **readings)
        durations.append(time.perf_counter() - before)
        if index % 100 == 99 or index == args.steps - 1:
            _write_atomic(progress, {"logged": index + 1, "last_step": step, "spilled": client.stats()["spilled"]})
        if args.rate > 0:
            ahead = started + (index + 1) / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    return durations


def _wait_for_file(path: Path, limit: float) -> None:
    """Until ``path`` exists (an event the test creates), at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="steps per second; 0 = as fast as possible")
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--collapse", action="store_true", help="log collapsed attention (a rule fires)")
    parser.add_argument("--config", default=None, help="run config as JSON")
    parser.add_argument("--spill-dir", required=True)
    parser.add_argument("--max-spill-bytes", type=int, default=256 * 1024 * 1024)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--flush-interval", type=float, default=0.1)
    parser.add_argument("--retry-budget", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--close-timeout", type=float, default=30.0)
    parser.add_argument("--probe-max", type=float, default=0.5, help="cap of the client's re-probe delay")
    parser.add_argument("--close-after", default=None,
                        help="wait for this file to exist before close() (the test says when the service is up)")
    parser.add_argument("--work-dir", required=True, help="progress.json and result.json go here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Stream, close, write the result file."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from trainer_client import MonitorClient

    work = Path(args.work_dir)
    config = json.loads(args.config) if args.config else None
    client = MonitorClient(args.url, args.token, args.run_id, config=config, spill_dir=args.spill_dir,
                           max_spill_bytes=args.max_spill_bytes, batch_size=args.batch_size,
                           flush_interval=args.flush_interval, retry_budget=args.retry_budget,
                           timeout=args.timeout)
    client.PROBE_MAX_S = args.probe_max  # re-probe a recovered service quickly in tests
    durations = sorted(_stream(client, args, work / "progress.json"))
    if args.close_after:
        _wait_for_file(Path(args.close_after), CLOSE_AFTER_LIMIT_S)
    before = time.perf_counter()
    client.close(timeout=args.close_timeout)
    close_seconds = time.perf_counter() - before
    _write_atomic(work / "result.json", {
        "logged": len(durations), "first_step": args.start, "close_seconds": close_seconds,
        "log_max_seconds": durations[-1] if durations else 0.0,
        "log_p99_seconds": _percentile(durations, 0.99), "log_p50_seconds": _percentile(durations, 0.5),
        "stats": client.stats(),
    })
    return 0


class TrainerProcess:
    """Handle on one trainer subprocess: progress, result, stderr."""

    def __init__(self, work_dir: Path, url: str, token: str, run_id: str, **options: Any) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        options.setdefault("spill_dir", str(work_dir / "spill"))
        self.spill_dir = Path(options["spill_dir"])
        command = [sys.executable, "-m", "tests.support.trainer_proc", "--url", url, "--token", token,
                   "--run-id", run_id, "--work-dir", str(work_dir)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value is not False and value is not None:
                command += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
        self.stderr_path = work_dir / "stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=self._stderr, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def progress(self) -> int:
        """Steps logged so far (0 before the first progress write)."""
        try:
            return int(json.loads((self.work_dir / "progress.json").read_text())["logged"])
        except (OSError, ValueError, KeyError):
            return 0

    def spilled(self) -> int:
        """Records the client had spilled at its last progress write (0 before the first)."""
        try:
            return int(json.loads((self.work_dir / "progress.json").read_text())["spilled"])
        except (OSError, ValueError, KeyError):
            return 0

    def wait_progress(self, logged: int, timeout: float = 60) -> None:
        """Block until at least ``logged`` steps were logged."""
        deadline = time.monotonic() + timeout
        while self.progress() < logged:
            if self.process.poll() is not None:
                raise AssertionError(f"trainer exited early ({self.process.returncode}):\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"trainer logged {self.progress()} < {logged} steps in {timeout}s")
            time.sleep(0.05)

    def wait(self, timeout: float = 120) -> dict[str, Any]:
        """Wait for exit and return the result file's content."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"trainer did not finish in {timeout}s:\n{self.stderr()}") from None
        assert code == 0, f"trainer exited with {code}:\n{self.stderr()}"
        return json.loads((self.work_dir / "result.json").read_text())

    def stderr(self, chars: int = 6000) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL the trainer (cleanup)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._stderr.close()


if __name__ == "__main__":
    raise SystemExit(main())
