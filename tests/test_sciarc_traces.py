"""Traces recorded from the real SCI-ARC trainer (tiny CPU runs), replayed through the real service.

The data (tests/data/sciarc, see README-traces.txt there) was produced by running
``scripts/train_rlan.py`` unmodified but for a recorder: a healthy run, learning rate 5 with
no clipping (``lr_blowup``), and DSC temperature 50 (``uniform_attention``); 6 epochs of 6
batches each, the run config is the tiny YAML beside each trace. The delivery tests hold on
any service version; the decision tests need the rules-as-data merge (issue 17/18: the
size-free attention, stop-mean and pre-clamp rules) and are skipped without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import REPO_ROOT, LiveService
from trainer_client import MonitorClient
from trainer_client.rlan import load_rlan_config

DATA = Path(__file__).parent / "data" / "sciarc"
# trace -> (run config, epoch the failure starts at; None = healthy)
TRACES: dict[str, tuple[str, int | None]] = {
    "healthy": ("tiny_stable.yaml", None),
    "lr_blowup": ("tiny_lr_blowup.yaml", 0),
    "uniform_attention": ("tiny_uniform_attention.yaml", 0),
}
needs_rules_merge = pytest.mark.skipif(
    not (REPO_ROOT / "monitor" / "rules" / "default_rules.yaml").exists(),
    reason="needs the rules-as-data merge (issue 17/18 rules on the new readings)")


def trace_lines(name: str) -> list[dict[str, Any]]:
    with open(DATA / f"trace_{name}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def replay(service: LiveService, name: str, spill: Path) -> tuple[MonitorClient, list[tuple[int, str | None]]]:
    """Send a trace as the trainer would have: records through log(), summaries through epoch_end()."""
    run = load_rlan_config(DATA / TRACES[name][0])
    client = MonitorClient(service.base_url, service.token, f"sciarc-{name}", project="sci-arc", spill_dir=spill,
                           flush_interval=0.05, session=f"trace-{name}", **run.client_kwargs())
    decisions: list[tuple[int, str | None]] = []
    for line in trace_lines(name):
        summary = line.get("epoch_summary")
        if summary is None:
            client.log(line)
            continue
        fields = {k: v for k, v in summary.items() if k not in ("epoch", "rank")}
        decisions.append((summary["epoch"], client.epoch_end(summary["epoch"], summary.get("rank", 0), wait=30,
                                                             **fields)))
    assert client.flush(30)
    client.close()
    return client, decisions


@pytest.mark.parametrize("name", sorted(TRACES))
def test_trace_is_delivered_exactly_once_with_its_config(sqlite_service: LiveService, tmp_path: Path,
                                                         name: str) -> None:
    client, decisions = replay(sqlite_service, name, tmp_path / "spill")
    stats = client.stats()
    records = [line for line in trace_lines(name) if "step" in line]
    assert (stats["sent"], stats["rejected"], stats["dropped"], stats["epochs_sent"]) == (len(records), 0, 0, 6)
    assert [epoch for epoch, _ in decisions] == list(range(6)) and all(d in ("continue", "pause") for _, d in decisions)
    run = sqlite_service.client.get(f"/api/v1/runs/sciarc-{name}").json()
    assert run["record_count"] == len(records) and run["escalation_start_epoch"] == 2
    assert run["config"]["model"]["hyperlora_max_norm"] == 1.0
    rows = sqlite_service.client.get(f"/api/v1/runs/sciarc-{name}/diagnostics").json()
    rows = rows if isinstance(rows, list) else rows["records"]
    by_step = {row["step"]: row for row in rows}
    for record in records:  # the size-free readings arrive as columns, or (older service) in extra
        row = by_step[record["step"]]
        value = row.get("attention_peak_ratio")
        value = row["extra"]["attention_peak_ratio"] if value is None else value
        assert value == pytest.approx(record["attention_peak_ratio"])


@needs_rules_merge
def test_healthy_trace_never_pauses_and_raises_no_warning(sqlite_service: LiveService, tmp_path: Path) -> None:
    _, decisions = replay(sqlite_service, "healthy", tmp_path / "spill")
    assert {d for _, d in decisions} == {"continue"}
    events = sqlite_service.client.get("/api/v1/runs/sciarc-healthy/events").json()
    assert [e for e in events["rule_events"] if e["kind"] != "resolved"] == []
    answer = sqlite_service.client.get("/escalation/decision", params={"run_id": "sciarc-healthy"}).json()
    assert answer["health"] == "ok", answer


@needs_rules_merge
@pytest.mark.parametrize("name", ["lr_blowup", "uniform_attention"])
def test_failure_trace_pauses_within_two_epochs_of_its_onset(sqlite_service: LiveService, tmp_path: Path,
                                                              name: str) -> None:
    _, decisions = replay(sqlite_service, name, tmp_path / "spill")
    onset = TRACES[name][1]
    assert onset is not None
    paused = [epoch for epoch, decision in decisions if decision == "pause"]
    assert paused and paused[0] <= onset + 2, decisions
