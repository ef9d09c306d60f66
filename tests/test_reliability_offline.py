"""The monitor is down for a trainer's whole run: training never waits, nothing is lost.

A real trainer process logs as fast as it can against a port nobody answers on (or
one that accepts connections and never replies). Every ``log()`` call and the final
``close()`` are timed: both are bounded. The records go to the spill file; a *new*
trainer process of the same run replays them once the service is up. With a small
spill bound, disk use stays under it and the trainer's stderr says what was dropped.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.reliability import assert_stored_exactly_once, wait_until
from tests.support.service import LiveService, free_port
from tests.support.trainer_proc import TrainerProcess
from trainer_client import MonitorClient
from trainer_client.spill import SPILL_SUFFIX, SpillStore
from trainer_client.spill_file import READ_CHUNK, SpillFile

STEPS = 3000
# One log() call is an append to a deque; what it costs is benchmarks/log_call.py's figure.
# This bound only catches a log() that waits on the network (seconds: the client's timeout
# and retry budget), with room for a busy box's scheduling stalls.
LOG_CALL_BOUND_S = 0.25
CLOSE_BOUND_S = 10.0  # close() with the service down: spill what is queued and return


def spill_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob(f"*{SPILL_SUFFIX}"))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) but never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        yield sock.getsockname()[1]


def assert_never_blocked(result: dict, close_bound: float = CLOSE_BOUND_S) -> None:
    assert result["logged"] == STEPS
    assert result["log_max_seconds"] < LOG_CALL_BOUND_S, result
    assert result["close_seconds"] < close_bound, result


@pytest.mark.slow
def test_service_down_all_run_spills_then_a_new_process_replays(sqlite_url: str, token: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spill = tmp_path / "spill"
    offline = TrainerProcess(tmp_path / "offline", url, token, "offline-run", steps=STEPS, spill_dir=str(spill),
                             retry_budget=0.5, close_timeout=5)
    result = offline.wait(60)
    assert_never_blocked(result)
    stats = result["stats"]
    assert stats["spilled"] == STEPS and stats["sent"] == 0 and stats["dropped"] == 0, stats
    assert spill_bytes(spill) > 0, "the spill file is kept for the next process"
    assert "unreachable" in offline.stderr() and str(spill) in offline.stderr()

    service = LiveService(sqlite_url, token, tmp_path / "service.log", port=port).start()
    try:
        resumed = TrainerProcess(tmp_path / "resumed", url, token, "offline-run", steps=100, start=STEPS,
                                 spill_dir=str(spill))
        resumed_result = resumed.wait(60)
        assert resumed_result["stats"]["replayed"] == STEPS, resumed_result
        assert_stored_exactly_once(service.client, "offline-run", range(STEPS + 100))
        assert spill_bytes(spill) == 0, "a replayed spill is drained"
    finally:
        service.close()


@pytest.mark.slow
def test_hung_service_never_blocks_log_and_close_is_bounded(silent_port: int, token: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    timeout, close_timeout = 1.0, 3.0
    trainer = TrainerProcess(tmp_path / "hung", url, token, "hung-run", steps=STEPS, timeout=timeout,
                             retry_budget=0.5, close_timeout=close_timeout)
    result = trainer.wait(60)
    # close() joins the sender for close_timeout, then waits one request timeout for it to spill.
    assert_never_blocked(result, close_bound=close_timeout + timeout + 5.0 + 1.0)
    stats = result["stats"]
    assert stats["spilled"] == STEPS and stats["sent"] == 0 and stats["dropped"] == 0, stats
    assert spill_bytes(trainer.spill_dir) > 0


@pytest.mark.slow
def test_spill_disk_use_is_bounded_with_a_clear_warning(sqlite_url: str, token: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spill, bound = tmp_path / "spill", 60_000
    trainer = TrainerProcess(tmp_path / "bounded", url, token, "bounded-run", steps=STEPS, spill_dir=str(spill),
                             max_spill_bytes=bound, batch_size=50, retry_budget=0.3, close_timeout=5)
    result = trainer.wait(60)
    assert_never_blocked(result)
    stats = result["stats"]
    assert 0 < spill_bytes(spill) <= bound and stats["spill_bytes"] <= bound, stats
    assert stats["spill_dropped"] > 0 and stats["spilled"] == STEPS, stats
    stderr = trainer.stderr()
    assert "WARNING" in stderr and "max_spill_bytes" in stderr and "record(s) dropped" in stderr, stderr

    service = LiveService(sqlite_url, token, tmp_path / "service.log", port=port).start()
    try:
        resumed = TrainerProcess(tmp_path / "resumed", url, token, "bounded-run", steps=10, start=STEPS,
                                 spill_dir=str(spill))
        resumed.wait(60)
        kept = STEPS - stats["spill_dropped"]
        assert_stored_exactly_once(service.client, "bounded-run", range(STEPS - kept, STEPS + 10))
    finally:
        service.close()


class _SlowProbeClient(MonitorClient):
    """The state a client reaches after a longer outage: its next re-probe is far away."""

    PROBE_MIN_S = 60.0
    PROBE_MAX_S = 60.0


def test_close_delivers_the_spill_once_the_service_is_back(sqlite_url: str, token: str, tmp_path: Path) -> None:
    port = free_port()
    service = LiveService(sqlite_url, token, tmp_path / "service.log", port=port)
    client = _SlowProbeClient(service.base_url, token, "back-before-close", spill_dir=tmp_path / "spill",
                              retry_budget=0.2, flush_interval=0.05)
    try:
        for step in range(100):
            client.log(step, 0, loss=0.5)
        assert client.flush(10) and client.stats()["spilled"] == 100
        service.start()
        for step in range(100, 110):
            client.log(step, 0, loss=0.5)
        client.close(timeout=10)  # training is over and the monitor answers: deliver, don't strand
        assert service.client.get("/api/v1/runs/back-before-close").status_code == 200, "nothing was delivered"
        assert_stored_exactly_once(service.client, "back-before-close", range(110))
    finally:
        client.close()
        service.close()


def test_stats_after_close_still_report_what_waits_on_disk(tmp_path: Path) -> None:
    client = MonitorClient(f"http://127.0.0.1:{free_port()}", "token", "left-on-disk", spill_dir=tmp_path / "spill",
                           retry_budget=0.2, flush_interval=0.05)
    for step in range(10):
        client.log(step, 0, loss=0.5)
    client.close(timeout=10)
    assert spill_bytes(tmp_path / "spill") > 0
    stats = client.stats()
    assert stats["spill_pending"] and stats["spill_bytes"] == spill_bytes(tmp_path / "spill"), stats


class _FastProbeClient(MonitorClient):
    """Re-probes every 50 ms: a long outage compressed into a second."""

    PROBE_MIN_S = 0.05
    PROBE_MAX_S = 0.05


def test_a_failed_probe_leaves_a_big_spill_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trainer_client")
    spill = tmp_path / "spill"
    client = _FastProbeClient(f"http://127.0.0.1:{free_port()}", "token", "long-outage", spill_dir=spill,
                              retry_budget=0.1, flush_interval=0.05, batch_size=100)
    try:
        for step in range(5000):
            client.log(step, 0, loss=0.5, accuracy=0.5)
        assert client.flush(30) and client.stats()["spilled"] == 5000
        [path] = spill.glob(f"*{SPILL_SUFFIX}")
        before, content = path.stat(), path.read_bytes()
        probes_before = caplog.text.count("failed")
        wait_until(lambda: caplog.text.count("failed") - probes_before >= 5, 60, 0.01, what="5 failed probes")
        probes = caplog.text.count("failed") - probes_before
        after = path.stat()
        assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size), \
            f"{probes} failed probes rewrote the spill file"
        assert path.read_bytes() == content
    finally:
        client.close(timeout=10)


def test_replay_reads_one_payload_per_failed_attempt_and_its_progress_survives_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SpillStore(tmp_path, 10**8, "crashy")
    store.open()
    for step in range(200):
        store.append({"records": [{"step": step, "epoch": 0, "extra": {"pad": "x" * 10_000}}]})
    size = store.total_bytes
    read = {"bytes": 0}
    original = SpillFile._read_at

    def counting(self: SpillFile, offset: int, count: int) -> bytes:
        data = original(self, offset, count)
        read["bytes"] += len(data)
        return data

    monkeypatch.setattr(SpillFile, "_read_at", counting)
    for _ in range(50):
        assert store.replay(lambda payload: payload) is False  # the service is down: nothing delivered
    # Each attempt reads the next payload (one chunk), not the spill: O(1), not O(spill).
    assert size > 20 * READ_CHUNK and read["bytes"] <= 50 * READ_CHUNK, (read, size)

    delivered: list[int] = []

    def three_then_down(payload: dict) -> dict | None:
        if len(delivered) == 3:
            return payload
        delivered.append(payload["records"][0]["step"])
        return None

    assert store.replay(three_then_down) is False
    for spill_file in store._files:  # the process dies: locks released, no close()
        spill_file.handle.close()
    successor = SpillStore(tmp_path, 10**8, "crashy")
    successor.open()
    replayed: list[int] = []
    assert successor.replay(lambda payload: replayed.append(payload["records"][0]["step"])) is True
    assert delivered == [0, 1, 2] and replayed == list(range(3, 200))
    successor.close()
    assert not list(tmp_path.glob(f"*{SPILL_SUFFIX}")), "a drained spill is removed"


def test_a_spill_file_vanishing_during_adoption_does_not_disable_spilling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spill = tmp_path / "spill"
    previous = SpillStore(spill, 10**6, "race")
    previous.open()
    previous.append({"records": [{"step": 0, "epoch": 0, "loss": 0.5}]})
    previous.close()
    real_glob = Path.glob

    def glob_with_a_ghost(self: Path, pattern: str) -> Iterator[Path]:
        yield from real_glob(self, pattern)
        yield self / f"race@ghost-1-deadbeef{SPILL_SUFFIX}"  # listed, then deleted by its owner

    monkeypatch.setattr(Path, "glob", glob_with_a_ghost)
    client = MonitorClient(f"http://127.0.0.1:{free_port()}", "token", "race", spill_dir=spill,
                           retry_budget=0.1, flush_interval=0.05)
    for step in range(1, 21):
        client.log(step, 0, loss=0.5)
    assert client.flush(10)
    client.close(timeout=10)
    monkeypatch.undo()
    stats = client.stats()
    assert stats["spilled"] == 20 and stats["spill_dropped"] == 0 and stats["dropped"] == 0, stats
    assert stats["spill_pending"] and stats["spill_bytes"] == spill_bytes(spill)
