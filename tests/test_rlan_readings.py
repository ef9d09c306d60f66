"""Issue 18 readings (design section 1): stored, read back, charted; NaN/Inf stay data."""

from __future__ import annotations

from monitor.schemas.diagnostics import READING_NAMES
from tests.support.service import LiveService

NEW_READINGS = {
    "attention_max_mean": 0.11,
    "attention_peak_ratio": 1.0,
    "attention_entropy_norm": 0.99,
    "stop_logit_mean": -1.0,
    "stop_logit_abs_mean": 1.0,
    "stop_prob_mean": 0.27,
    "lora_norm_preclamp_mean": 1.4,
    "lora_norm_preclamp_max": 2.2,
}


def test_the_new_readings_are_built_in() -> None:
    assert set(NEW_READINGS) <= set(READING_NAMES)


def test_new_readings_round_trip_and_chart(service: LiveService) -> None:
    assert service.client.put("/api/v1/runs/r", json={}).status_code == 201
    records = [{"step": s, "epoch": 0, **NEW_READINGS} for s in range(3)]
    records.append({"step": 3, "epoch": 0, **NEW_READINGS, "stop_logit_mean": "NaN",
                    "lora_norm_preclamp_max": "Infinity", "attention_peak_ratio": "-Infinity"})
    answer = service.json("POST", "/api/v1/runs/r/diagnostics", json={"records": records})
    assert answer["accepted"] == 4
    stored = service.json("GET", "/api/v1/runs/r/diagnostics")["records"]
    for name, value in NEW_READINGS.items():
        assert [r[name] for r in stored[:3]] == [value] * 3
    assert stored[3]["stop_logit_mean"] == "NaN"
    assert stored[3]["lora_norm_preclamp_max"] == "Infinity"
    assert stored[3]["attention_peak_ratio"] == "-Infinity"
    assert stored[3]["stop_prob_mean"] == 0.27
    series = service.json("GET", "/api/v1/runs/r/series")["series"]
    for name in NEW_READINGS:
        assert name in series, name
    assert series["stop_prob_mean"]["values"] == [0.27] * 4
    nonfinite = series["stop_logit_mean"]["nonfinite"]
    assert nonfinite and nonfinite[0]["step"] == 3 and nonfinite[0]["value"] == "NaN"
