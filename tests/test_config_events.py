"""A config change is recorded: what changed, from what, and what it did to the decision (16.8).

Before: a second PUT replaced the whole config silently; demoting ``attention_collapse``
turned pause into continue and nothing said why.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.config_diff import config_diff
from tests.support.receiver import Receiver, drive_collapse, subscribe
from tests.support.service import LiveService

COLLAPSED = {"monitor": {"batch_for": 3}}
DEMOTED = {"monitor": {"batch_for": 3, "severity": {"attention_collapse": "warning"}}}


def config_events(service: LiveService, run_id: str, **params: Any) -> list[dict[str, Any]]:
    response = service.client.get(f"/api/v1/runs/{run_id}/events", params=params)
    assert response.status_code == 200, response.text
    return [item for item in response.json()["run_events"] if item["kind"] == "config.changed"]


def test_demoting_a_pause_rule_is_recorded_with_the_decision_it_flipped(service: LiveService) -> None:
    drive_collapse(service, "flip")
    assert service.client.get("/api/v1/runs/flip").json()["decision"] == "pause"
    assert config_events(service, "flip") == []  # creating the run is not a change
    answer = service.client.put("/api/v1/runs/flip", json={"config": DEMOTED})
    assert answer.status_code == 200 and answer.json()["decision"] == "continue"
    [event] = config_events(service, "flip")
    assert event["changes"] == [{"path": ["monitor", "severity"], "change": "added",
                                 "new": {"attention_collapse": "warning"}}]
    assert (event["decision_before"], event["decision_after"]) == ("pause", "continue")
    assert event["changed_count"] == 1 and event["truncated"] is False and event["at"]


def test_same_config_again_records_nothing(service: LiveService) -> None:
    client = service.client
    assert client.put("/api/v1/runs/same", json={"config": COLLAPSED}).status_code == 201
    assert client.put("/api/v1/runs/same", json={"config": COLLAPSED}).status_code == 200
    assert client.put("/api/v1/runs/same", json={"name": "renamed"}).status_code == 200
    assert config_events(service, "same") == []


def test_each_change_is_one_event_paged_oldest_first(sqlite_service: LiveService) -> None:
    client = sqlite_service.client
    for value in range(5):
        assert client.put("/api/v1/runs/paged", json={"config": {"lr": value}}).status_code in (200, 201)
    first = config_events(sqlite_service, "paged", limit=2)
    second = config_events(sqlite_service, "paged", limit=2, offset=2)
    rest = config_events(sqlite_service, "paged", limit=2, offset=4)
    changes = [(item["changes"][0]["old"], item["changes"][0]["new"]) for item in [*first, *second, *rest]]
    assert changes == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert [item["id"] for item in first] == sorted(item["id"] for item in first)


def test_a_refused_config_records_nothing(sqlite_service: LiveService) -> None:
    client = sqlite_service.client
    assert client.put("/api/v1/runs/refused", json={"config": {"lr": 1}}).status_code == 201
    assert client.put("/api/v1/runs/refused", json={"config": {"meta_escalation": "x"}}).status_code == 422
    assert config_events(sqlite_service, "refused") == []
    assert client.get("/api/v1/runs/refused").json()["config"] == {"lr": 1}


def test_the_change_is_a_webhook_event(service: LiveService, receiver: Receiver) -> None:
    subscribe(service, receiver.url + "/config", events=["config.changed"])
    client = service.client
    assert client.put("/api/v1/runs/hooked", json={"config": {"lr": 1}}).status_code == 201
    assert client.put("/api/v1/runs/hooked", json={"config": {"lr": 2}}).status_code == 200
    [delivered] = receiver.wait_delivered(1)
    body = json.loads(delivered.body)
    assert body["type"] == "config.changed"
    assert body["data"]["run_id"] == "hooked"
    assert body["data"]["changes"] == [{"path": ["lr"], "change": "changed", "old": 1, "new": 2}]


def test_diff_is_bounded() -> None:
    old = {f"k{i}": i for i in range(200)}
    new = {f"k{i}": i + 1 for i in range(200)}
    diff = config_diff(old, new, max_changes=50)
    assert len(diff["changes"]) == 50 and diff["changed_count"] == 200 and diff["truncated"] is True
    big = config_diff({"notes": "a"}, {"notes": "b" * 10_000}, max_value_bytes=512)
    assert big["changes"] == [{"path": ["notes"], "change": "changed", "old": "a", "new_bytes": 10_002}]


def test_diff_tells_types_and_removals_apart() -> None:
    diff = config_diff({"a": 1, "b": {"c": True, "d": [1]}}, {"a": 1.0, "b": {"c": 1}})
    assert diff["changes"] == [
        {"path": ["a"], "change": "changed", "old": 1, "new": 1.0},
        {"path": ["b", "c"], "change": "changed", "old": True, "new": 1},
        {"path": ["b", "d"], "change": "removed", "old": [1]},
    ]


def test_slack_text_names_the_keys_and_the_flip() -> None:
    from monitor.alerts.formats import slack_text

    data = {"run_id": "r", "changes": [{"path": ["monitor", "severity"], "change": "added", "new": {}}],
            "changed_count": 1, "decision_before": "pause", "decision_after": "continue",
            "dashboard_url": "http://x/runs/r"}
    text = slack_text({"type": "config.changed", "data": data})
    assert "`monitor.severity`" in text and "*pause* -> *continue*" in text and "<http://x/runs/r|" in text
