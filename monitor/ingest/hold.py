"""A test-only hold point inside the ingestion transaction, so a fault test kills a worker exactly mid-batch.

A fault test that kills a worker "while it works" must not guess how long a batch takes:
on a fast machine the batch commits before the kill and the test sees 200 instead of
503. This point is off unless ``MONITOR_TEST_HOLD_DIR`` names a directory (one
environment lookup per batch). A test arms it by creating ``armed`` there; the next
transaction to reach the point claims it by an atomic rename to ``held-<pid>`` (so one
job holds, and only once per arming), then waits, rows written and not committed,
until ``release`` appears (or ``HOLD_LIMIT_S`` passes, so a forgotten hold never
wedges a worker for good).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_DIR_ENV = "MONITOR_TEST_HOLD_DIR"
HOLD_LIMIT_S = 300.0


def hold_point() -> None:
    """Wait here if a test armed the hold; return at once otherwise."""
    folder = os.environ.get(HOLD_DIR_ENV)
    if not folder:
        return
    held = Path(folder, f"held-{os.getpid()}")
    try:
        os.rename(Path(folder, "armed"), held)
    except FileNotFoundError:
        return
    release = Path(folder, "release")
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
