"""Epoch summaries carry extras (issue 18.7): validated, stored, read back paged per rank."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from monitor.rules.types import EpochReading
from monitor.schemas.diagnostics import EpochSummary
from monitor.store.epochs import summary_to_reading
from tests.support.service import LiveService

EXTRA = {"attention_collapse_events_epoch": 3.0, "clamp_hit_rate": 0.25, "stop_weight_var": "NaN",
         "per_clue_entropy": [0.1, 0.2, "Infinity"], "task_accuracy": 0.5}


def test_summary_accepts_scalars_and_short_vectors() -> None:
    summary = EpochSummary(epoch=1, extra=EXTRA)
    assert summary.extra["clamp_hit_rate"] == 0.25
    assert math.isnan(summary.extra["stop_weight_var"])
    assert summary.extra["per_clue_entropy"][:2] == [0.1, 0.2] and summary.extra["per_clue_entropy"][2] == math.inf


@pytest.mark.parametrize("extra, where", [
    ({f"k{i}": 1.0 for i in range(65)}, ("extra",)),
    ({"v": [1.0] * 65}, ("extra", "v")),
    ({"": 1.0}, ("extra",)),
    ({"bad\u0000name": 1.0}, ("extra",)),
    ({"x" * 101: 1.0}, ("extra",)),
    ({"s": "text"}, ("extra", "s")),
])
def test_summary_refuses_oversized_or_badly_named_extras(extra: dict, where: tuple) -> None:
    with pytest.raises(ValidationError) as caught:
        EpochSummary(epoch=1, extra=extra)
    assert tuple(caught.value.errors()[0]["loc"][:len(where)]) == where


def test_the_engine_sees_epoch_extras() -> None:
    assert not EpochReading(epoch=0).extra  # no extras unless the trainer sends them
    reading = summary_to_reading(EpochSummary(epoch=2, extra={"clamp_hit_rate": 0.5, "v": [1.0, 2.0]}))
    assert reading.extra == {"clamp_hit_rate": 0.5, "v": [1.0, 2.0]}


def _close(service: LiveService, epoch: int, rank: int = 0, **fields) -> None:
    answer = service.json("POST", "/api/v1/runs/r/epochs", json={"epoch": epoch, "rank": rank, **fields})
    assert answer["accepted"] is True


def test_epoch_extras_are_stored_and_listed(service: LiveService) -> None:
    assert service.client.put("/api/v1/runs/r", json={}).status_code == 201
    _close(service, 0, eval_accuracy=0.5, extra=EXTRA)
    _close(service, 0, rank=1, train_accuracy="NaN")
    _close(service, 1, eval_accuracy=0.6, extra={"clamp_hit_rate": 0.3})
    listed = service.json("GET", "/api/v1/runs/r/epochs")
    assert [(e["epoch"], e["rank"]) for e in listed["epochs"]] == [(0, 0), (0, 1), (1, 0)]
    first = listed["epochs"][0]
    assert first["eval_accuracy"] == 0.5
    assert first["extra"] == {"attention_collapse_events_epoch": 3.0, "clamp_hit_rate": 0.25,
                              "stop_weight_var": "NaN", "per_clue_entropy": [0.1, 0.2, "Infinity"],
                              "task_accuracy": 0.5}
    assert listed["epochs"][1]["train_accuracy"] == "NaN" and listed["epochs"][1]["extra"] == {}
    rank0 = service.json("GET", "/api/v1/runs/r/epochs", params={"rank": 0})["epochs"]
    assert [e["epoch"] for e in rank0] == [0, 1]
    page = service.json("GET", "/api/v1/runs/r/epochs", params={"limit": 1, "offset": 1})
    assert [(e["epoch"], e["rank"]) for e in page["epochs"]] == [(0, 1)]
    missing = service.client.get("/api/v1/runs/nope/epochs")
    assert missing.status_code == 404 and "detail" in missing.json()


def test_bad_epoch_extra_is_a_documented_422(service: LiveService) -> None:
    assert service.client.put("/api/v1/runs/r", json={}).status_code == 201
    response = service.client.post("/api/v1/runs/r/epochs", json={"epoch": 0, "extra": {"v": [1.5] * 65}})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert all(set(item) == {"type", "loc", "msg"} for item in detail)
    assert "1.5" not in response.text
