"""MonitorClient against the real service: exactly-once delivery, spill/replay, never raising."""

from __future__ import annotations

import logging
import math
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.support.fake_monitor import FakeMonitor, FakeRequest
from tests.support.service import REPO_ROOT, LiveService
from trainer_client import MonitorClient
from trainer_client.spill import SPILL_SUFFIX


def make_client(base_url: str, token: str, run_id: str, spill_dir: Path, **kwargs: Any) -> MonitorClient:
    """A client tuned for tests: short intervals and retry budget, fast re-probing."""
    options: dict[str, Any] = {"flush_interval": 0.05, "retry_budget": 1.0, "batch_size": 100}
    options.update(kwargs)
    client = MonitorClient(base_url, token, run_id, spill_dir=spill_dir, **options)
    client.PROBE_MAX_S = 0.3  # instance override: re-probe a recovered service quickly
    return client


def record_count(service: LiveService, run_id: str) -> int:
    """Stored records of a run; 0 while the run does not exist yet."""
    response = service.client.get(f"/api/v1/runs/{run_id}")
    if response.status_code == 404:
        return 0
    response.raise_for_status()
    return response.json()["record_count"]


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def wait_sender_idle(client: MonitorClient) -> None:
    """Until the sender thread is blocked on its wake-up event with nothing queued: from then on
    it takes records only when ``batch_size`` of them are queued, a flush asks, or the flush
    interval passes (an event to wait on, not a guess like "asleep after 0.3 s")."""
    waiters = client._wake._cond._waiters  # CPython's threading.Event: a Condition and its waiters
    assert wait_for(lambda: not client._queue and len(waiters) == 1, 30), "the sender never went idle"


def log_steps(client: MonitorClient, steps: range, epoch_every: int = 100) -> None:
    for step in steps:
        client.log(step, step // epoch_every, loss=1.0 / (step + 1), accuracy=0.5, attention_max=0.9,
                   lora_norm_max=1.0, my_metric=float(step))


@pytest.fixture
def down_service(sqlite_url: str, token: str, tmp_path: Path) -> Iterator[LiveService]:
    """A service object whose process is not running yet (port reserved by number only)."""
    live = LiveService(sqlite_url, token, tmp_path / "service.log")
    try:
        yield live
    finally:
        live.close()


def test_delivers_everything_exactly_once(service: LiveService, tmp_path: Path) -> None:
    client = make_client(service.base_url, service.token, "once", tmp_path / "spill", config={"x": 1})
    log_steps(client, range(1234))
    assert client.flush(30)
    assert record_count(service, "once") == 1234
    client.close()
    stats = client.stats()
    assert stats["sent"] == stats["accepted"] == 1234
    assert stats["duplicates"] == stats["dropped"] == stats["spilled"] == 0
    assert service.json("GET", "/api/v1/runs/once")["config"] == {"x": 1}


def test_epoch_end_follows_its_batches_and_returns_the_decision(sqlite_service: LiveService, tmp_path: Path) -> None:
    client = make_client(sqlite_service.base_url, sqlite_service.token, "ep", tmp_path / "spill",
                         flush_interval=30.0)  # only epoch_end can push the batches out
    log_steps(client, range(50))
    assert client.epoch_end(0, eval_accuracy=0.9, train_accuracy=0.8, max_nan_streak=0) == "continue"
    assert record_count(sqlite_service, "ep") == 50
    assert client.stats()["epochs_sent"] == 1
    client.close()


class DropResponsesProxy:
    """TCP proxy that forwards diagnostics POSTs but loses the first ``drops`` responses.

    The server stores the batch, the client sees a broken connection and retries: the
    real-world way a retried batch reaches the server twice.
    """

    def __init__(self, upstream_port: int, drops: int) -> None:
        self.upstream_port = upstream_port
        self.drops = drops
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            state = {"diag": False}
            threading.Thread(target=self._pump_requests, args=(downstream, upstream, state), daemon=True).start()
            threading.Thread(target=self._pump_responses, args=(upstream, downstream, state), daemon=True).start()

    @staticmethod
    def _pump_requests(src: socket.socket, dst: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := src.recv(65536):
                if data.startswith(b"POST"):
                    state["diag"] = b"/diagnostics" in data.split(b"\r\n", 1)[0]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _hang_up(dst)

    def _pump_responses(self, src: socket.socket, dst: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := src.recv(65536):
                if state["diag"] and self.drops > 0:
                    self.drops -= 1
                    break  # the response is lost; the request was processed
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _hang_up(dst)
            _hang_up(src)

    def close(self) -> None:
        self.listener.close()


def _hang_up(sock: socket.socket) -> None:
    """shutdown() first: close() alone does not wake a recv() blocked in another thread."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def test_retried_batches_are_deduplicated(sqlite_service: LiveService, tmp_path: Path) -> None:
    proxy = DropResponsesProxy(sqlite_service.port, drops=2)
    try:
        client = make_client(f"http://127.0.0.1:{proxy.port}", sqlite_service.token, "retry",
                             tmp_path / "spill", retry_budget=10.0, flush_interval=30.0)
        wait_sender_idle(client)  # it wakes at exactly batch_size records
        log_steps(client, range(300))
        assert client.flush(30)
        client.close()
    finally:
        proxy.close()
    stats = client.stats()
    assert proxy.drops == 0, "the proxy should have lost two responses"
    assert record_count(sqlite_service, "retry") == 300
    # The batch whose answers were lost was stored once and reported as duplicates on the third try.
    assert 0 < stats["duplicates"] <= 100
    assert stats["accepted"] + stats["duplicates"] == stats["sent"] == 300
    assert stats["spilled"] == 0


def test_service_down_at_start_spills_then_replays_exactly_once(
        down_service: LiveService, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trainer_client")
    client = make_client(down_service.base_url, down_service.token, "down", tmp_path / "spill",
                         retry_budget=0.3)
    log_steps(client, range(250))
    assert client.epoch_end(2, eval_accuracy=0.5, wait=10) is None  # spilled, not delivered
    assert client.flush(20)
    stats = client.stats()
    assert stats["spilled"] == 250 and stats["sent"] == 0 and stats["offline"] and stats["spill_pending"]
    assert "unreachable" in caplog.text
    down_service.start()
    log_steps(client, range(250, 300))
    assert wait_for(lambda: client.flush(5) and not client.stats()["spill_pending"])
    client.close()
    stats = client.stats()
    assert record_count(down_service, "down") == 300
    # Records logged before the next probe also wait in the spill, behind the older ones.
    assert stats["replayed"] == stats["spilled"] >= 250
    assert stats["duplicates"] == 0 and stats["epochs_sent"] == 1
    assert "reachable again" in caplog.text
    assert not list((tmp_path / "spill").glob(f"*{SPILL_SUFFIX}")), "drained spill files are removed"


def test_resumed_process_replays_the_previous_spill(down_service: LiveService, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    writer = textwrap.dedent(f"""
        from trainer_client import MonitorClient
        c = MonitorClient({down_service.base_url!r}, {down_service.token!r}, "resumed",
                          spill_dir={str(spill)!r}, retry_budget=0.2, flush_interval=0.05)
        for step in range(120):
            c.log(step, 0, loss=0.5)
        assert c.flush(20)
        c.close()
        assert c.stats()["spilled"] == 120, c.stats()
    """)
    subprocess.run([sys.executable, "-c", writer], cwd=REPO_ROOT, check=True, timeout=60)
    assert sum(p.stat().st_size for p in spill.glob(f"*{SPILL_SUFFIX}")) > 0
    down_service.start()
    client = make_client(down_service.base_url, down_service.token, "resumed", spill)
    assert wait_for(lambda: record_count(down_service, "resumed") == 120)
    log_steps(client, range(120, 130))
    assert client.flush(10)
    client.close()
    assert record_count(down_service, "resumed") == 130
    assert client.stats()["replayed"] == 120


def test_replay_cli_delivers_a_crashed_trainers_spill(down_service: LiveService, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    client = make_client(down_service.base_url, down_service.token, "crashed", spill, retry_budget=0.2)
    log_steps(client, range(80))
    client.close()
    assert client.stats()["spilled"] == 80
    down_service.start()
    command = [sys.executable, "-m", "trainer_client", "replay", "--url", down_service.base_url, "--token",
               down_service.token, "--run-id", "crashed", "--spill-dir", str(spill), "--timeout", "20"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replayed 80 record(s)" in result.stdout
    assert record_count(down_service, "crashed") == 80


def test_http_client_imports_without_torch() -> None:
    probe = ("import sys; sys.modules['torch'] = None; import trainer_client; "
             "assert trainer_client.MonitorClient and trainer_client.EscalationGate; "
             "import importlib.util; print('ok')")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_spill_bound_drops_oldest_with_a_warning(
        down_service: LiveService, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trainer_client")
    bound = 20_000
    client = make_client(down_service.base_url, down_service.token, "bounded", tmp_path / "spill",
                         retry_budget=0.2, max_spill_bytes=bound, batch_size=50)
    log_steps(client, range(2000))
    assert client.flush(30)
    stats = client.stats()
    on_disk = sum(p.stat().st_size for p in (tmp_path / "spill").glob(f"*{SPILL_SUFFIX}"))
    assert 0 < on_disk <= bound and stats["spill_bytes"] <= bound
    assert stats["spill_dropped"] > 0 and stats["dropped"] == stats["spill_dropped"]
    assert "max_spill_bytes" in caplog.text and "record(s) dropped" in caplog.text
    down_service.start()
    assert wait_for(lambda: client.flush(5) and not client.stats()["spill_pending"])
    client.close()
    run = down_service.json("GET", "/api/v1/runs/bounded")
    assert run["record_count"] == 2000 - stats["spill_dropped"]
    assert run["last_step"] == 1999, "the newest records are kept, the oldest dropped"


def test_log_never_raises_on_garbage(sqlite_service: LiveService, tmp_path: Path) -> None:
    client = make_client(sqlite_service.base_url, sqlite_service.token, "garbage", tmp_path / "spill")
    bad_inputs: list[tuple[tuple, dict]] = [
        ((None,), {}), (("x", "y"), {}), ((1.5, 0), {}), ((-1, 0), {}), ((2**70, 0), {}),
        ((1, 0), {"rank": 70_000}), ((object(), object(), object()), {"weird": object()}),
        (({"epoch": 0},), {}),
    ]
    for args, kwargs in bad_inputs:
        client.log(*args, **kwargs)
    client.log(0, 0, loss="not a number", accuracy=[1, 2], grad_norm=torch.tensor([1.0, 2.0]),
               foo=object(), **{"x" * 200: 1.0})
    client.log({"step": 1, "epoch": 0, "loss": torch.tensor(0.5), "extra": {"a": np.float32(1)}})
    client.log(2, 0, loss=math.nan, grad_norm=math.inf, logit_min=-math.inf,
               extra={f"m{i}": float(i) for i in range(80)})
    client.log(torch.tensor(3), np.int64(0), rank=np.int32(1), loss=np.float64(0.1), accuracy=True)
    assert client.flush(20)
    client.close()
    stats = client.stats()
    assert record_count(sqlite_service, "garbage") == 4
    assert stats["invalid"] == len(bad_inputs) and stats["rejected"] == 0
    assert stats["invalid_readings"] >= 5 + 16  # 5 bad readings + extras over the 64 limit


def test_server_rejection_isolates_the_bad_record(
        sqlite_service: LiveService, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="trainer_client")
    client = make_client(sqlite_service.base_url, sqlite_service.token, "reject", tmp_path / "spill",
                         flush_interval=30.0)
    log_steps(client, range(0, 60))
    client.log({"step": 60, "epoch": 0, "timestamp": -5.0, "loss": 1.0})  # the server refuses this one
    log_steps(client, range(61, 100))
    assert client.flush(20)
    client.close()
    assert record_count(sqlite_service, "reject") == 99
    assert client.stats()["rejected"] == 1
    assert "step 60" in caplog.text and "timestamp" in caplog.text


def test_queue_full_drops_and_counts_without_raising(
        sqlite_service: LiveService, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trainer_client")
    client = make_client(sqlite_service.base_url, sqlite_service.token, "full", tmp_path / "spill",
                         max_queue=10, batch_size=1000, flush_interval=30.0)
    wait_sender_idle(client)  # and with max_queue < batch_size, nothing wakes it while we log
    log_steps(client, range(1000))
    dropped = client.stats()["queue_dropped"]
    assert dropped == 1000 - 10, "the queue keeps max_queue records and drops the rest"
    assert caplog.text.count("queue is full") == 1  # warned once, not per record
    assert client.flush(20)
    client.close()
    assert record_count(sqlite_service, "full") == 1000 - dropped  # everything not dropped arrived


def test_close_semantics(sqlite_service: LiveService, tmp_path: Path) -> None:
    # What one log() call costs is a benchmark's figure (benchmarks/log_call.py), not a test's.
    client = make_client(sqlite_service.base_url, sqlite_service.token, "close", tmp_path / "spill",
                         max_queue=1_000_000, batch_size=5000)
    for step in range(20_000):
        client.log(step, 0, loss=0.1, accuracy=0.5, grad_norm=1.0)
    client.close()
    client.close()  # idempotent
    client.log(20_000, 0, loss=0.1)  # after close: dropped, never raised
    assert client.flush(1)
    assert client.epoch_end(0) is None
    assert record_count(sqlite_service, "close") == 20_000
    assert client.stats()["queue_dropped"] == 1


def test_close_with_service_down_spills_within_bound(down_service: LiveService, tmp_path: Path) -> None:
    client = make_client(down_service.base_url, down_service.token, "closedown", tmp_path / "spill",
                         retry_budget=0.5)
    log_steps(client, range(500))
    started = time.monotonic()
    client.close(timeout=10)
    assert time.monotonic() - started < 10
    assert client.stats()["spilled"] == 500
    assert list((tmp_path / "spill").glob(f"*{SPILL_SUFFIX}")), "the spill is kept for the next process"


def test_recreates_the_run_after_a_404(sqlite_service: LiveService, token: str, tmp_path: Path) -> None:
    client = make_client(sqlite_service.base_url, token, "reborn", tmp_path / "spill", run_name="Reborn")
    log_steps(client, range(100))
    assert client.flush(20)
    sqlite_service.stop()
    fresh = LiveService(f"sqlite:///{tmp_path / 'fresh.db'}", token, tmp_path / "fresh.log",
                        port=sqlite_service.port).start()
    try:
        log_steps(client, range(100, 150))
        assert client.flush(20)
        client.close()
        run = fresh.json("GET", "/api/v1/runs/reborn")
        assert run["record_count"] == 50 and run["name"] == "Reborn"
    finally:
        fresh.close()


# --- encoding: values strict JSON cannot carry cost nothing else -------------------------------

def test_non_finite_config_values_are_sent_as_strings(
        sqlite_service: LiveService, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trainer_client")
    config = {"lr": math.nan, "schedule": {"max": math.inf, "range": [-math.inf, 0.1]}, "layers": np.int64(3),
              "scale": np.float32(0.5)}
    client = make_client(sqlite_service.base_url, sqlite_service.token, "nan-config", tmp_path / "spill",
                         config=config)
    log_steps(client, range(20))
    assert client.flush(20)
    client.close()
    stats = client.stats()
    assert record_count(sqlite_service, "nan-config") == 20
    assert stats["sent"] == 20 and stats["invalid"] == 0 and stats["spilled"] == 0, stats
    stored = sqlite_service.json("GET", "/api/v1/runs/nan-config")["config"]
    assert stored == {"lr": "NaN", "schedule": {"max": "Infinity", "range": ["-Infinity", 0.1]}, "layers": 3,
                      "scale": 0.5}
    assert "config.lr" in caplog.text and "config.schedule.max" in caplog.text


def test_encode_float_never_raises_on_huge_or_hostile_values() -> None:
    from trainer_client.payload import encode_float

    class Hostile:
        def __float__(self) -> float:
            raise KeyError("no")

    assert encode_float(10**400) == "Infinity" and encode_float(-(10**400)) == "-Infinity"
    assert encode_float(np.float64("nan")) == "NaN" and encode_float(3) == 3.0
    assert encode_float(Hostile()) is not None and not isinstance(encode_float(Hostile()), (float, str))


def test_huge_readings_and_a_nan_timestamp_cost_no_batch(sqlite_service: LiveService, tmp_path: Path) -> None:
    client = make_client(sqlite_service.base_url, sqlite_service.token, "huge", tmp_path / "spill")
    log_steps(client, range(10))
    client.log(10, 0, loss=10**400, grad_norm=-(10**400), extra={"big": 10**500})
    client.log({"step": 11, "epoch": 0, "timestamp": math.nan, "loss": 0.5})
    assert client.flush(20)
    client.close()
    stats = client.stats()
    assert record_count(sqlite_service, "huge") == 12
    assert stats["sent"] == 12 and stats["invalid"] == 0 and stats["dropped"] == 0, stats
    assert stats["invalid_readings"] == 1  # the NaN timestamp (the record's log time is used instead)
    records = sqlite_service.json("GET", "/api/v1/runs/huge/diagnostics", params={"limit": 100})["records"]
    huge = next(record for record in records if record["step"] == 10)
    assert huge["loss"] == "Infinity" and huge["grad_norm"] == "-Infinity"


# --- transport: hostile answers and run ids ----------------------------------------------------

def test_retry_after_nan_garbage_negative_or_huge_never_crashes_the_sender(tmp_path: Path) -> None:
    headers = iter(["nan", "garbage", "-5", "inf", "1e308", "Wed, 21 Oct 2015 07:28:00 GMT"])
    refused: list[str] = []

    def unavailable_first(request: FakeRequest) -> Any:
        value = next(headers, None) if request.method == "POST" else None
        if value is None:
            return None
        refused.append(value)
        return 503, {"Retry-After": value}, {"detail": "database unavailable"}

    fake = FakeMonitor(unavailable_first)
    try:
        client = make_client(fake.base_url, "t", "retry-after", tmp_path / "spill", retry_budget=10.0)
        log_steps(client, range(50))
        # "1e308" waits the backoff cap, not forever (flush's deadline); that the cap is 2 s is
        # checked without a clock in test_retry_after_parsing_is_defensive.
        assert client.flush(30)
        client.close()
    finally:
        fake.close()
    stats = client.stats()
    assert len(refused) == 6, refused
    assert fake.stored_steps() == list(range(50))
    assert stats["sent"] == 50 and stats["invalid"] == 0 and stats["spilled"] == 0, stats


def test_retry_after_parsing_is_defensive() -> None:
    import httpx

    from trainer_client.transport import MAX_RETRY_AFTER_S, _backoff, _retry_after

    def parsed(value: str) -> float | None:
        return _retry_after(httpx.Response(503, headers={"Retry-After": value}))

    assert parsed("nan") is None and parsed("inf") is None and parsed("-inf") is None and parsed("soon") is None
    assert parsed("-5") == 0.0 and parsed("1.5") == 1.5 and parsed("1e308") == MAX_RETRY_AFTER_S
    assert parsed("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now
    assert _retry_after(httpx.Response(503)) is None
    assert 0 <= _backoff(3, math.nan) <= 2.0 and _backoff(0, 99.0) == 2.0


def test_run_id_is_one_escaped_path_segment(tmp_path: Path) -> None:
    fake = FakeMonitor()
    try:
        client = make_client(fake.base_url, "t", "a b/c?d#e%", tmp_path / "spill")
        log_steps(client, range(5))
        assert client.epoch_end(0) == "continue"
        client.close()
    finally:
        fake.close()
    paths = {(request.method, request.path) for request in fake.requests}
    prefix = "/api/v1/runs/a%20b%2Fc%3Fd%23e%25"
    assert paths == {("PUT", prefix), ("POST", prefix + "/diagnostics"), ("POST", prefix + "/epochs")}, paths


def test_run_id_with_a_colon_reaches_the_real_service(sqlite_service: LiveService, tmp_path: Path) -> None:
    client = make_client(sqlite_service.base_url, sqlite_service.token, "sweep:7", tmp_path / "spill")
    log_steps(client, range(30))
    assert client.flush(20)
    client.close()
    assert record_count(sqlite_service, "sweep:7") == 30 and client.stats()["sent"] == 30


# --- counters: exact through outages, rejections and cut-short bisections -----------------------

def test_counters_are_exact_through_an_outage_and_a_rejected_record(tmp_path: Path) -> None:
    state = {"down": False}

    def script(request: FakeRequest) -> Any:
        if state["down"]:
            return 503, {}, {"detail": "down"}
        if 150 in request.steps:
            return 422, {}, {"detail": [{"loc": ["body", "records"], "msg": "step 150 is refused"}]}
        return None

    fake = FakeMonitor(script)
    try:
        client = make_client(fake.base_url, "t", "exact", tmp_path / "spill", retry_budget=0.2, batch_size=50)
        log_steps(client, range(100))
        assert client.flush(20)
        state["down"] = True
        log_steps(client, range(100, 200))
        assert client.flush(20) and client.stats()["spilled"] == 100
        state["down"] = False
        assert wait_for(lambda: client.flush(5) and not client.stats()["spill_pending"])
        client.close()
    finally:
        fake.close()
    stats = client.stats()
    expected = {"sent": 199, "accepted": 199, "duplicates": 0, "spilled": 100, "replayed": 99, "rejected": 1,
                "invalid": 0, "queue_dropped": 0, "spill_dropped": 0, "dropped": 1, "spill_bytes": 0}
    assert {key: stats[key] for key in expected} == expected
    assert fake.stored_steps() == [step for step in range(200) if step != 150]


def test_a_bisection_cut_short_is_neither_resent_nor_recounted(tmp_path: Path) -> None:
    state = {"six_fails": True}

    def script(request: FakeRequest) -> Any:
        if 2 in request.steps:
            return 422, {}, {"detail": "step 2 is refused"}
        if 6 in request.steps and state["six_fails"]:
            return 503, {}, {"detail": "down"}
        return None

    fake = FakeMonitor(script)
    try:
        client = make_client(fake.base_url, "t", "bisect", tmp_path / "spill", retry_budget=0.2, batch_size=8,
                             flush_interval=30.0)
        log_steps(client, range(8))
        assert client.flush(20)
        stats = client.stats()
        assert (stats["sent"], stats["rejected"], stats["spilled"]) == (3, 1, 4), stats
        state["six_fails"] = False
        assert wait_for(lambda: client.flush(5) and not client.stats()["spill_pending"])
        client.close()
    finally:
        fake.close()
    stats = client.stats()
    assert (stats["sent"], stats["replayed"], stats["rejected"], stats["dropped"]) == (7, 4, 1, 1), stats
    assert stats["duplicates"] == 0
    assert fake.stored_steps() == [0, 1, 3, 4, 5, 6, 7]
    assert set(fake.delivered.values()) == {1}, "no record was delivered twice"


def test_flush_replays_the_spill_once_the_service_is_back(tmp_path: Path) -> None:
    state = {"down": True}
    fake = FakeMonitor(lambda request: (503, {}, {"detail": "down"}) if state["down"] else None)
    try:
        client = make_client(fake.base_url, "t", "flushed", tmp_path / "spill", retry_budget=0.2)
        client.PROBE_MIN_S = client.PROBE_MAX_S = 60.0  # no re-probe would come during this test
        log_steps(client, range(40))
        assert client.flush(20) and client.stats()["spill_pending"]
        state["down"] = False
        assert client.flush(20)
        stats = client.stats()
        assert not stats["spill_pending"] and stats["replayed"] == stats["spilled"] == 40, stats
        client.close()
    finally:
        fake.close()
    assert fake.stored_steps() == list(range(40))


# --- issue 18.10: replay recreates the run, record sessions, older services, epoch extras ---------


def test_replay_recreates_the_run_with_its_config_project_and_escalation_start(
        down_service: LiveService, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    config = {"training": {"meta_escalation": {"start_epoch": 7}}, "model": {"hyperlora_max_norm": 1.0}}
    client = make_client(down_service.base_url, down_service.token, "crashed-cfg", spill, retry_budget=0.2,
                         project="sci-arc", config=config, escalation_start_epoch=7)
    log_steps(client, range(30))
    client.close()
    assert client.stats()["spilled"] == 30
    down_service.start()
    command = [sys.executable, "-m", "trainer_client", "replay", "--url", down_service.base_url, "--token",
               down_service.token, "--run-id", "crashed-cfg", "--spill-dir", str(spill), "--timeout", "20"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    run = down_service.client.get("/api/v1/runs/crashed-cfg").json()
    assert (run["config"], run["project"], run["escalation_start_epoch"]) == (config, "sci-arc", 7)
    assert run["record_count"] == 30


def test_records_carry_one_session_per_client(tmp_path: Path) -> None:
    fake = FakeMonitor()
    try:
        sessions = []
        for index, option in enumerate((True, True, "resume-2", False)):
            client = make_client(fake.base_url, "t", "sessions", tmp_path / f"spill{index}", session=option)
            client.log(index, 0, loss=0.1)
            assert client.flush(10)
            client.close()
            sessions.append(client.stats()["session"])
        bodies = [r.body for r in fake.requests if r.method == "POST"]
    finally:
        fake.close()
    sent = [body["records"][0].get("session") for body in bodies]
    assert sent == sessions and sessions[0] and sessions[1] and sessions[0] != sessions[1]
    assert sessions[2:] == ["resume-2", None]


def test_an_older_service_refusing_new_fields_gets_readings_in_extra(
        sqlite_service: LiveService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A reading the service does not know (as a new reading is to a service not yet upgraded)."""
    from trainer_client import payload

    monkeypatch.setattr(payload, "READING_NAMES", payload.READING_NAMES | {"zz_future_reading"})
    caplog.set_level(logging.WARNING, logger="trainer_client")
    client = make_client(sqlite_service.base_url, sqlite_service.token, "older", tmp_path / "spill",
                         batch_size=10, session="s-1")
    for step in range(30):
        client.log(step, 0, loss=0.5, zz_future_reading=float(step))
    assert client.flush(20)
    client.close()
    stats = client.stats()
    assert record_count(sqlite_service, "older") == 30 and stats["rejected"] == 0
    assert "zz_future_reading" in stats["refused_fields"]
    assert caplog.text.count("does not know the field 'zz_future_reading'") == 1  # said once
    records = sqlite_service.client.get("/api/v1/runs/older/diagnostics").json()
    rows = records if isinstance(records, list) else records.get("records", records)
    assert sorted(row["extra"]["zz_future_reading"] for row in rows) == [float(s) for s in range(30)]


def test_epoch_extras_scalars_and_short_vectors_bad_ones_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trainer_client")
    fake = FakeMonitor()
    try:
        client = make_client(fake.base_url, "t", "epoch-extras", tmp_path / "spill")
        decision = client.epoch_end(3, eval_accuracy=0.5, extra={
            "task_accuracy": 0.25, "per_clue": torch.tensor([0.1, 0.2]), "np": np.array([1.0, float("nan")]),
            "too_long": list(range(65)), "text": "no", "nested": [[1.0]]})
        client.close()
        (body,) = [r.body for r in fake.requests if r.method == "POST" and r.path.endswith("/epochs")]
    finally:
        fake.close()
    assert decision == "continue"
    assert body["extra"] == {"task_accuracy": 0.25, "per_clue": [pytest.approx(0.1), pytest.approx(0.2)],
                             "np": [1.0, "NaN"]}
    assert "too_long, text, nested" in caplog.text


def test_spill_header_survives_compaction_and_is_adopted(tmp_path: Path) -> None:
    from trainer_client.spill import SpillStore

    body = {"project": "p", "config": {"a": 1}, "escalation_start_epoch": 4}
    store = SpillStore(tmp_path, max_bytes=2000, run_id="hdr", run_body=body)
    store.open()
    for step in range(60):  # over the bound: the oldest payloads are compacted away
        store.append({"records": [{"step": step, "epoch": 0}]})
    assert store.dropped_records > 0
    store.close()
    (path,) = tmp_path.glob(f"*{SPILL_SUFFIX}")
    assert path.read_bytes().startswith(b"#run ")
    successor = SpillStore(tmp_path, max_bytes=2000, run_id="hdr", run_body={"name": "resumed"})
    successor.open()
    assert successor.run_body == {"name": "resumed", **body}  # its own fields win, the rest adopted
    sent: list[dict] = []
    assert successor.replay(lambda payload: sent.append(payload))
    assert sent and all("records" in payload for payload in sent)  # the header is never replayed
    successor.close()
