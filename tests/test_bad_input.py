"""Awkward and hostile input, on SQLite and PostgreSQL: each gets the documented answer, never a 500.

Documented behaviour (docs/reliability.md, "Bad input"): out-of-order and repeated
steps are stored once; any finite double round-trips exactly; an empty batch is a
200 with nothing accepted; unknown runs are 404; wrong types, out-of-range indexes,
overlong run ids and non-JSON bodies are 422 naming the field (a body that cannot
be parsed at all is 400). The last section pins bugs found while writing these (now fixed).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import create_database, drop_database
from tests.support.service import LiveService

MAX_INDEX = 2**62
EXTREMES = [1e308, -1e308, 1e-308, 5e-324, -5e-324, 1.7976931348623157e308, -0.0]
READINGS = ["lora_norm_mean", "lora_norm_max", "stop_logit_var", "attention_max", "attention_entropy", "logit_min",
            "logit_max", "accuracy", "loss", "nan_count", "grad_norm"]
JSON = {"Content-Type": "application/json"}


def _start(kind: str, folder: Path) -> tuple[LiveService, str]:
    url = f"sqlite:///{folder / 'monitor.db'}" if kind == "sqlite" else create_database()
    return LiveService(url, "bad-" + secrets.token_hex(12), folder / "service.log").start(), url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """One service per backend for the module (each test uses its own run ids)."""
    service, url = _start(request.param, tmp_path_factory.mktemp(f"bad-{request.param}"))
    service.kind = request.param  # type: ignore[attr-defined]
    try:
        yield service
    finally:
        service.close()
        if request.param == "postgres":
            drop_database(url)


def call(service: LiveService, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request on a fresh connection (after a 500 the server may drop a kept-alive one)."""
    headers = {**service.auth_headers, **kwargs.pop("headers", {})}
    return httpx.request(method, service.base_url + path, headers=headers, timeout=30, **kwargs)


def new_run(service: LiveService, run_id: str) -> str:
    assert call(service, "PUT", f"/api/v1/runs/{run_id}", json={}).status_code in (200, 201)
    return run_id


def post_records(service: LiveService, run_id: str, records: Any) -> httpx.Response:
    return call(service, "POST", f"/api/v1/runs/{run_id}/diagnostics", json={"records": records})


def assert_422_naming(response: httpx.Response, *loc: Any) -> None:
    """422 whose detail points at ``loc`` (FastAPI's error list)."""
    assert response.status_code == 422, response.text
    locations = [tuple(error["loc"]) for error in response.json()["detail"]]
    assert any(location[: len(loc)] == loc for location in locations), (loc, locations)


def assert_4xx_detail(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.json()["detail"]


def stored(service: LiveService, run_id: str) -> list[dict[str, Any]]:
    response = call(service, "GET", f"/api/v1/runs/{run_id}/diagnostics")
    assert response.status_code == 200, response.text
    return response.json()["records"]


# ------------------------------------------------------------------------------ documented
def test_out_of_order_and_repeated_steps_are_stored_once(api: LiveService) -> None:
    run = new_run(api, "order")
    first = post_records(api, run, [{"step": s, "epoch": 0, "loss": float(s)} for s in (5, 3, 9, 1, 3, 5)])
    assert first.json() == {"accepted": 4, "duplicates": 2, "last_step": 9, "late": 0, "notes": []}
    second = post_records(api, run, [{"step": s, "epoch": 0, "loss": -1.0} for s in range(11)])
    answer = second.json()
    assert answer == {**answer, "accepted": 7, "duplicates": 4, "last_step": 10, "late": 6}  # 0-8 below 9
    assert "6 records were stored but not evaluated" in answer["notes"][0]
    late = post_records(api, run, [{"step": 2, "epoch": 0}])  # already stored, and older than last_step
    assert late.json() == {"accepted": 0, "duplicates": 1, "last_step": 10, "late": 0, "notes": []}
    records = stored(api, run)
    assert [r["step"] for r in records] == list(range(11))
    assert {r["step"]: r["loss"] for r in records}[5] == 5.0, "the first copy wins; a repeat never overwrites"
    assert call(api, "GET", f"/api/v1/runs/{run}").json()["record_count"] == 11


def test_extreme_finite_values_round_trip_exactly(api: LiveService) -> None:
    run = new_run(api, "extremes")
    records = [{"step": i, "epoch": 0, **{name: value for name in READINGS}, "extra": {"x": value}}
               for i, value in enumerate(EXTREMES)]
    assert post_records(api, run, records).json()["accepted"] == len(EXTREMES)
    for record, value in zip(stored(api, run), EXTREMES):
        assert all(record[name] == value for name in READINGS), (value, record)
        assert record["extra"]["x"] == value
    for path in (f"/api/v1/runs/{run}/series", f"/api/v1/runs/{run}/series?metrics=extra.x", f"/api/v1/runs/{run}",
                 f"/escalation/decision?run_id={run}", f"/runs/{run}/data", f"/api/v1/runs/{run}/events"):
        assert call(api, "GET", path).status_code == 200, path
    assert call(api, "POST", f"/api/v1/runs/{run}/backtest", json={}).status_code == 200
    page = call(api, "GET", f"/runs/{run}", headers={"Cookie": f"monitor_token={api.token}"})
    assert page.status_code == 200


def test_overflowing_and_non_finite_literals_are_data(api: LiveService) -> None:
    """1e309 parses to +Infinity; NaN/Infinity literals and their string spellings are stored as such."""
    run = new_run(api, "nonfinite")
    body = b'{"records": [{"step": 0, "epoch": 0, "loss": 1e309, "grad_norm": -1e309},' \
           b' {"step": 1, "epoch": 0, "loss": NaN, "grad_norm": -Infinity, "accuracy": "Infinity"}]}'
    response = call(api, "POST", f"/api/v1/runs/{run}/diagnostics", content=body, headers=JSON)
    assert response.json()["accepted"] == 2
    first, second = stored(api, run)
    assert (first["loss"], first["grad_norm"]) == ("Infinity", "-Infinity")
    assert (second["loss"], second["grad_norm"], second["accuracy"]) == ("NaN", "-Infinity", "Infinity")


def test_empty_batch_is_accepted_with_nothing_stored(api: LiveService) -> None:
    run = new_run(api, "empty")
    response = post_records(api, run, [])
    assert response.status_code == 200 and response.json() == {"accepted": 0, "duplicates": 0, "last_step": None,
                                                               "late": 0, "notes": []}
    assert call(api, "GET", f"/api/v1/runs/{run}").json()["record_count"] == 0


def test_unknown_runs_are_404_everywhere(api: LiveService) -> None:
    calls = [("GET", "/api/v1/runs/ghost", None), ("GET", "/api/v1/runs/ghost/events", None),
             ("GET", "/api/v1/runs/ghost/diagnostics", None), ("GET", "/api/v1/runs/ghost/series", None),
             ("POST", "/api/v1/runs/ghost/diagnostics", {"records": [{"step": 0, "epoch": 0}]}),
             ("POST", "/api/v1/runs/ghost/epochs", {"epoch": 0}), ("POST", "/api/v1/runs/ghost/backtest", {}),
             ("GET", "/escalation/decision?run_id=ghost", None), ("GET", "/runs/ghost/data", None)]
    for method, path, body in calls:
        response = call(api, method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert "ghost" in response.json()["detail"], (method, path)
    page = call(api, "GET", "/runs/ghost", headers={"Cookie": f"monitor_token={api.token}"})
    assert page.status_code == 404 and "ghost" in page.text


@pytest.mark.parametrize(("field", "value"), [
    ("step", "abc"), ("step", None), ("step", 1.5), ("step", [1]), ("epoch", None), ("epoch", {}),
    ("rank", -1), ("rank", 65536), ("loss", "high"), ("loss", [0.1]), ("timestamp", -5.0),
    ("timestamp", 1e12), ("extra", [1.0]), ("extra", {"name": "x"}), ("bogus_reading", 1.0),
])
def test_wrong_record_types_are_422_naming_the_field(api: LiveService, field: str, value: Any) -> None:
    run = new_run(api, "types")
    records = [{"step": 0, "epoch": 0}, {"step": 1, "epoch": 0, field: value}]
    assert_422_naming(post_records(api, run, records), "body", "records", 1, field)
    assert call(api, "GET", f"/api/v1/runs/{run}").json()["record_count"] == 0, "a bad batch is refused whole"


@pytest.mark.parametrize(("path", "body", "loc"), [
    ("/api/v1/runs/types2", {"name": 123}, ("body", "name")),
    ("/api/v1/runs/types2", {"config": [1, 2]}, ("body", "config")),
    ("/api/v1/runs/types2", {"escalation_start_epoch": "soon"}, ("body", "escalation_start_epoch")),
    ("/api/v1/runs/types2", {"name": "x" * 201}, ("body", "name")),
    ("/api/v1/runs/types2", {"unknown_field": 1}, ("body", "unknown_field")),
    ("/api/v1/runs/types2/diagnostics", {"records": {"step": 0}}, ("body", "records")),
    ("/api/v1/runs/types2/diagnostics", {"records": None}, ("body", "records")),
    ("/api/v1/runs/types2/epochs", {"epoch": 0, "eval_accuracy": "x"}, ("body", "eval_accuracy")),
    ("/api/v1/runs/types2/epochs", {"epoch": -1}, ("body", "epoch")),
    ("/api/v1/runs/types2/epochs", {"epoch": 0, "max_nan_streak": -3}, ("body", "max_nan_streak")),
])
def test_wrong_body_types_are_422_naming_the_field(api: LiveService, path: str, body: Any, loc: tuple) -> None:
    new_run(api, "types2")
    method = "PUT" if path.count("/") == 4 else "POST"
    assert_422_naming(call(api, method, path, json=body), *loc)


@pytest.mark.parametrize("step", [2**63 - 1, 2**63, 2**64, 10**30, MAX_INDEX + 1, -1])
def test_steps_beyond_the_index_range_are_422(api: LiveService, step: int) -> None:
    run = new_run(api, "int64")
    assert_422_naming(post_records(api, run, [{"step": step, "epoch": 0}]), "body", "records", 0, "step")
    assert_422_naming(post_records(api, run, [{"step": 0, "epoch": step}]), "body", "records", 0, "epoch")


def test_largest_index_is_a_step_jump_but_a_valid_epoch(api: LiveService) -> None:
    # Issue 18.8: a first step beyond MONITOR_MAX_STEP_JUMP is refused (stored, it made every later record
    # late); tests/test_step_segments.py stores MAX_INDEX under a limit that allows it.
    run = new_run(api, "maxindex")
    refused = post_records(api, run, [{"step": MAX_INDEX, "epoch": MAX_INDEX}])
    assert_422_naming(refused, "body", "records", 0, "step")
    assert post_records(api, run, [{"step": 0, "epoch": MAX_INDEX}]).json()["last_step"] == 0
    assert stored(api, run)[0]["epoch"] == MAX_INDEX
    window = call(api, "GET", f"/api/v1/runs/{run}/diagnostics", params={"step_min": MAX_INDEX})
    assert window.json()["records"] == []


def test_integers_too_long_to_parse_are_refused(api: LiveService) -> None:
    run = new_run(api, "digits")
    body = b'{"records": [{"step": ' + b"9" * 5000 + b', "epoch": 0}]}'
    assert_4xx_detail(call(api, "POST", f"/api/v1/runs/{run}/diagnostics", content=body, headers=JSON))


@pytest.mark.parametrize("run_id", ["a" * 201, "a" * 10_000, "-leading-dash", "has space", "r\u00e9", "a/b",
                                    "semi;colon", "quote'"])
def test_bad_run_ids_are_422(api: LiveService, run_id: str) -> None:
    for method, path, kwargs in [("PUT", f"/api/v1/runs/{run_id}", {"json": {}}),
                                 ("GET", "/escalation/decision", {"params": {"run_id": run_id}})]:
        response = call(api, method, path, **kwargs)
        if "/" in run_id and method == "PUT":
            assert response.status_code == 404  # a slash makes it another path, which does not exist
            continue
        if method == "GET" and len(run_id) > 4096:  # MONITOR_MAX_QUERY_BYTES (issue 16.6)
            assert response.status_code == 414 and response.json()["detail"]
            continue
        assert_422_naming(response, "path" if method == "PUT" else "query", "run_id")


def test_longest_valid_run_id_works(api: LiveService) -> None:
    run_id = "r" * 200
    assert call(api, "PUT", f"/api/v1/runs/{run_id}", json={}).status_code == 201
    assert post_records(api, run_id, [{"step": 0, "epoch": 0}]).json()["accepted"] == 1
    assert call(api, "GET", "/escalation/decision", params={"run_id": run_id}).status_code == 200


@pytest.mark.parametrize("body", [b"hello", b"", b"{", b"[]", b"null", b'"records"', b"\xff\xfe\x00",
                                  b"[" * 100_000 + b"]" * 100_000, b'{"records": [{"step": 0, "epoch": 0}]} trailing'])
def test_non_json_bodies_are_refused_with_a_detail(api: LiveService, body: bytes) -> None:
    run = new_run(api, "nonjson")
    response = call(api, "POST", f"/api/v1/runs/{run}/diagnostics", content=body, headers=JSON)
    assert response.status_code in (400, 422), (body[:20], response.status_code, response.text[:200])
    assert response.json()["detail"]
    assert call(api, "GET", f"/api/v1/runs/{run}").json()["record_count"] == 0


@pytest.mark.parametrize(("content_type", "accepted"), [
    ("application/json", True), ("application/json; charset=utf-8", True), ("application/vnd.api+json", True),
    ("text/plain", False), ("application/x-www-form-urlencoded", False), ("multipart/form-data", False),
    (None, False),
])
def test_content_type_must_be_json(api: LiveService, content_type: str | None, accepted: bool) -> None:
    """A JSON body sent as another type is not parsed: 422 ("valid dictionary" at the body), nothing stored."""
    run = new_run(api, f"ctype-{secrets.token_hex(4)}")
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"records": [{"step": 0, "epoch": 0}]}).encode()
    response = call(api, "POST", f"/api/v1/runs/{run}/diagnostics", content=body, headers=headers)
    if accepted:
        assert response.status_code == 200 and response.json()["accepted"] == 1
    else:
        assert_422_naming(response, "body")
        assert call(api, "GET", f"/api/v1/runs/{run}").json()["record_count"] == 0


def test_lax_number_coercions_are_accepted(api: LiveService) -> None:
    """Pydantic's lax mode: "12" and 11.0 are step 12 and 11, true is 1. Documented, not an error."""
    run = new_run(api, "lax")
    response = post_records(api, run, [{"step": "12", "epoch": "0"}, {"step": 11.0, "epoch": 0},
                                       {"step": True, "epoch": False}, {"step": 3, "epoch": 0, "loss": "0.5"}])
    assert response.json()["accepted"] == 4
    assert [r["step"] for r in stored(api, run)] == [1, 3, 11, 12]


def test_too_many_records_per_request_is_413(api: LiveService) -> None:
    run = new_run(api, "many")
    response = post_records(api, run, [{"step": s, "epoch": 0} for s in range(50_001)])
    assert response.status_code == 413 and "50000" in response.json()["detail"]


# ------------------------------------------------------------------------ fixed bugs (regressions)
# Each once answered 500 (or 503); see docs/reliability.md, "Bugs found by these tests".
def test_lone_surrogate_in_a_field_is_422(api: LiveService) -> None:
    """The 422 handler used to crash echoing the surrogate; now it names the field and echoes nothing."""
    response = call(api, "PUT", "/api/v1/runs/surrogate", content=b'{"name": "\\ud800"}', headers=JSON)
    assert_422_naming(response, "body", "name")
    assert all(set(error) == {"type", "loc", "msg"} for error in response.json()["detail"])


def test_surrogate_extra_name_is_422(api: LiveService) -> None:
    run = new_run(api, "surrogate-extra")
    body = b'{"records": [{"step": 0, "epoch": 0, "extra": {"\\udc00": 1.0}}]}'
    response = call(api, "POST", f"/api/v1/runs/{run}/diagnostics", content=body, headers=JSON)
    assert_422_naming(response, "body")  # the JSON parser itself refuses a lone surrogate escape
    assert "surrogate" in response.text
    assert call(api, "GET", f"/api/v1/runs/{run}/diagnostics").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/deliveries", "/api/v1/webhooks/1/deliveries"])
def test_huge_offset_is_422(api: LiveService, path: str) -> None:
    for offset in (2**31, 2**63):
        assert_422_naming(call(api, "GET", path, params={"offset": offset}), "query", "offset")
    assert call(api, "GET", path, params={"offset": 2**31 - 1}).status_code in (200, 404)


@pytest.mark.parametrize("field", ["grad_explosion_events", "lr_backoff_events", "max_nan_streak"])
def test_huge_epoch_event_counts_are_422(api: LiveService, field: str) -> None:
    """INTEGER columns: more than 2**31-1 overflowed PostgreSQL (and 2**63-1 SQLite)."""
    run = new_run(api, "events-overflow")
    for big in (2**31, 2**63):
        response = call(api, "POST", f"/api/v1/runs/{run}/epochs", json={"epoch": 0, field: big})
        assert_422_naming(response, "body", field)
    largest = call(api, "POST", f"/api/v1/runs/{run}/epochs", json={"epoch": 0, field: 2**31 - 1})
    assert largest.status_code == 200, largest.text


@pytest.fixture
def poisoned(sqlite_service: LiveService) -> LiveService:
    """A service of its own: this bug broke listing runs for everyone."""
    return sqlite_service


def test_surrogate_in_config_does_not_poison_the_run_list(poisoned: LiveService) -> None:
    response = call(poisoned, "PUT", "/api/v1/runs/poison", content=b'{"config": {"k": "\\udc00"}}', headers=JSON)
    assert_422_naming(response, "body", "config")
    assert "config.k" in response.json()["detail"][0]["msg"]
    assert call(poisoned, "GET", "/api/v1/runs").status_code == 200
    assert call(poisoned, "GET", "/api/v1/runs/poison").status_code == 404, "a refused PUT stores nothing"


def test_nul_characters_are_refused(api: LiveService) -> None:
    """PostgreSQL text cannot hold NUL; both databases refuse it alike (422, not 500)."""
    for body, field in (({"name": "a\u0000b"}, "name"), ({"project": "\u0000"}, "project")):
        assert_422_naming(call(api, "PUT", "/api/v1/runs/nul", json=body), "body", field)
    assert_422_naming(call(api, "GET", "/api/v1/runs", params={"project": "a\u0000"}), "query", "project")
    assert call(api, "GET", "/api/v1/runs/nul").status_code == 404


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_config_values_are_422_naming_the_key(api: LiveService, literal: bytes) -> None:
    """JSON columns cannot hold them (PostgreSQL: 500; SQLite silently stored null): refused on both."""
    body = b'{"config": {"hyper_lora": {"limits": [1.0, ' + literal + b"]}}}"
    response = call(api, "PUT", "/api/v1/runs/nan-config", content=body, headers=JSON)
    assert_422_naming(response, "body", "config")
    assert "config.hyper_lora.limits[1]" in response.json()["detail"][0]["msg"]
    assert call(api, "GET", "/api/v1/runs/nan-config").status_code == 404


def test_nul_extra_name_is_422_and_series_reads_work(api: LiveService) -> None:
    """Stored, such a name broke every ?metrics=extra.* read of the run on PostgreSQL."""
    run = new_run(api, "nul-extra")
    response = post_records(api, run, [{"step": 0, "epoch": 0, "extra": {"ok": 1.0, "a\u0000b": 2.0}}])
    assert_422_naming(response, "body", "records", 0, "extra")
    assert post_records(api, run, [{"step": 0, "epoch": 0, "extra": {"ok": 1.0}}]).json()["accepted"] == 1
    assert call(api, "GET", f"/api/v1/runs/{run}/series", params={"metrics": "extra.ok"}).status_code == 200


def test_bad_metric_name_is_not_reported_as_an_outage(api: LiveService) -> None:
    """A NUL in a metric name was a SQLite JSON-path error mapped to 503 + Retry-After (clients retried forever)."""
    run = new_run(api, "metric-nul")
    post_records(api, run, [{"step": 0, "epoch": 0, "extra": {"ok": 1.0}}])
    response = call(api, "GET", f"/api/v1/runs/{run}/series", params={"metrics": "extra.a\u0000"})
    assert response.status_code == 422, (response.status_code, response.text)
    assert "retry-after" not in response.headers
