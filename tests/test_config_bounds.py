"""Run configs are bounded (depth, size, exact integers) and never stored unless they read back.

Issue 16.3: a config nested ~300 levels was stored, its PUT answered a plain-text 500,
and from then on ``GET /api/v1/runs`` answered 500 for everyone. Now such a config is a
422 in the documented shape and nothing is stored; the list keeps working.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.service import LiveService


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """A config ``depth`` mappings deep (the config itself is level 1)."""
    tree: Any = leaf
    for _ in range(depth):
        tree = {"a": tree}
    return tree


def assert_documented_422(response: httpx.Response, loc_prefix: list[Any]) -> list[dict[str, Any]]:
    """422, detail a list of {type, loc, msg}, nothing echoed; returns the details."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    for item in detail:
        assert set(item) == {"type", "loc", "msg"}, item
    assert detail[0]["loc"][: len(loc_prefix)] == loc_prefix, detail
    return detail


def test_deep_config_is_refused_and_reads_keep_working(service: LiveService) -> None:
    client = service.client
    assert client.put("/api/v1/runs/ok", json={"config": {"monitor": {"batch_for": 3}}}).status_code == 201
    deep = client.put("/api/v1/runs/deep", json={"config": nested(300)})
    assert_documented_422(deep, ["body", "config"])
    again = client.put("/api/v1/runs/ok", json={"config": nested(300)})
    assert_documented_422(again, ["body", "config"])
    listing = client.get("/api/v1/runs")
    assert listing.status_code == 200, listing.text
    assert [run["run_id"] for run in listing.json()] == ["ok"]
    assert client.get("/api/v1/runs/ok").json()["config"] == {"monitor": {"batch_for": 3}}
    assert client.get("/api/v1/runs/deep").status_code == 404


def test_depth_limit_is_exact(sqlite_service: LiveService) -> None:
    """Default MONITOR_MAX_CONFIG_DEPTH is 32: 32 levels pass, 33 do not (the loc names the path)."""
    client = sqlite_service.client
    at_limit = client.put("/api/v1/runs/r32", json={"config": nested(32)})
    assert at_limit.status_code == 201, at_limit.text
    assert client.get("/api/v1/runs/r32").json()["config"] == nested(32)
    over = client.put("/api/v1/runs/r33", json={"config": nested(33)})
    [item] = assert_documented_422(over, ["body", "config"])
    assert item["loc"] == ["body", "config", *["a"] * 32] and "32" in item["msg"]


def test_lists_count_as_levels(sqlite_service: LiveService) -> None:
    config: Any = 0
    for _ in range(33):
        config = [config]
    response = sqlite_service.client.put("/api/v1/runs/lists", json={"config": {"x": config}})
    assert_documented_422(response, ["body", "config", "x"])


def test_very_deep_body_is_json_4xx_not_a_crash(sqlite_service: LiveService) -> None:
    """Deeper than Python's own parser goes: still a JSON 4xx, and the service keeps answering."""
    depth = 5000
    body = '{"config":' + '{"a":' * depth + "1" + "}" * depth + "}"
    response = sqlite_service.client.put("/api/v1/runs/abyss", content=body,
                                         headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500 and "detail" in response.json()
    assert sqlite_service.client.get("/api/v1/runs").status_code == 200


def test_large_config_is_refused(sqlite_service: LiveService) -> None:
    """Default MONITOR_MAX_CONFIG_BYTES is 256 KiB of compact JSON."""
    client = sqlite_service.client
    fits = {"notes": "x" * (200 * 1024)}
    assert client.put("/api/v1/runs/fits", json={"config": fits}).status_code == 201
    big = {"notes": "x" * (300 * 1024)}
    [item] = assert_documented_422(client.put("/api/v1/runs/big", json={"config": big}), ["body", "config"])
    assert item["loc"] == ["body", "config"] and "262144" in item["msg"] and "xxx" not in item["msg"]


def test_size_and_depth_limits_are_settings(sqlite_url: str, token: str, tmp_path) -> None:
    env = {"MONITOR_MAX_CONFIG_DEPTH": "4", "MONITOR_MAX_CONFIG_BYTES": "100"}
    live = LiveService(sqlite_url, token, tmp_path / "service.log", env=env).start()
    try:
        assert live.client.put("/api/v1/runs/a", json={"config": nested(4)}).status_code == 201
        assert live.client.put("/api/v1/runs/b", json={"config": nested(5)}).status_code == 422
        assert live.client.put("/api/v1/runs/c", json={"config": {"s": "y" * 100}}).status_code == 422
    finally:
        live.close()


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**64, 10**30])
def test_integers_json_clients_cannot_hold_are_refused(sqlite_service: LiveService, value: int) -> None:
    response = sqlite_service.client.put("/api/v1/runs/big-int", json={"config": {"opt": {"seed": [1, value]}}})
    [item] = assert_documented_422(response, ["body", "config"])
    assert item["loc"] == ["body", "config", "opt", "seed", 1]
    assert str(value) not in item["msg"]


def test_largest_exact_integer_round_trips(service: LiveService) -> None:
    limit = 2**53 - 1
    config = {"seed": limit, "neg": -limit, "flag": True}
    assert service.client.put("/api/v1/runs/exact", json={"config": config}).status_code == 201
    assert service.client.get("/api/v1/runs/exact").json()["config"] == config


@pytest.mark.parametrize(("config", "loc"), [
    ({"meta_escalation": "x"}, ["meta_escalation"]),
    ({"monitor": 3}, ["monitor"]),
    ({"training": [1, 2]}, ["training"]),
    ({"hyper_lora": True}, ["hyper_lora"]),
    ({"monitor": {"batch_for": -1}}, ["monitor", "batch_for"]),
    ({"monitor": {"severity": {"no_such_rule": "pause"}}}, ["monitor", "severity", "no_such_rule"]),
])
def test_unusable_sections_are_422_naming_the_loc(sqlite_service: LiveService, config: dict, loc: list) -> None:
    response = sqlite_service.client.put("/api/v1/runs/sections", json={"config": config})
    detail = assert_documented_422(response, ["body", "config"])
    assert detail[0]["loc"] == ["body", "config", *loc]
    assert "got" not in detail[0]["msg"]
    assert sqlite_service.client.get("/api/v1/runs/sections").status_code == 404


_TAMPER = {
    "sqlite": ["CREATE TRIGGER tamper AFTER UPDATE OF config ON runs BEGIN "
               "UPDATE runs SET config = '{\"tampered\": 1}' "
               "WHERE run_id = NEW.run_id AND config != '{\"tampered\": 1}'; END"],
    "postgresql": [
        "CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.config := '{\"tampered\": 1}'::json; RETURN NEW; END $$",
        "CREATE TRIGGER tamper BEFORE UPDATE OF config ON runs FOR EACH ROW EXECUTE FUNCTION tamper()",
    ],
}


def test_a_config_that_does_not_read_back_is_not_kept(service: LiveService) -> None:
    """A database that changes what it stores (here: a trigger) costs a 422 and a rollback."""
    client = service.client
    assert client.put("/api/v1/runs/t", json={"config": {"v": 1}}).status_code == 201
    engine = create_engine(service.database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            for statement in _TAMPER[engine.dialect.name]:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    response = client.put("/api/v1/runs/t", json={"config": {"v": 2}})
    [item] = assert_documented_422(response, ["body", "config"])
    assert "read back" in item["msg"]
    assert client.get("/api/v1/runs/t").json()["config"] == {"v": 1}


def test_ingest_neither_loads_nor_rereads_the_config(database_url: str) -> None:
    """Thresholds come from the process's cache by config digest: after the first batch, ingesting
    reads no config column and builds no thresholds (a 7 MB config cost each 1-record batch 64 ms)."""
    import json as jsonlib

    from sqlalchemy import event

    from monitor import evaluation
    from monitor.ingest.work import store_batch
    from monitor.rules.config_sections import RuleSetCache
    from monitor.schemas.config_tree import check_config
    from monitor.settings import Settings
    from monitor.store import runs
    from monitor.store.database import Database
    from monitor.store.migrate import upgrade

    upgrade(database_url)
    db, settings = Database(database_url, pool_size=2), Settings(database_url=database_url)
    statements: list[str] = []
    built: list[object] = []
    original = RuleSetCache.build
    try:
        config = check_config({"hyper_lora": {"lora_max_norm": 2.5}, "notes": "n" * 1000}, max_depth=32,
                              max_bytes=10**6)
        with db.write_session() as session:
            runs.upsert_run(session, "cached", runs.RunFields(config=config))
            runs.upsert_run(session, "bare", runs.RunFields())  # no config: hashed as {}
        evaluation._RULESETS = RuleSetCache()  # this test's own cache, empty

        def batch(step: int) -> bytes:
            return jsonlib.dumps({"records": [{"step": step, "epoch": 0, "lora_norm_max": 1.0}]}).encode()

        for run_id in ("cached", "bare"):
            store_batch(db, settings, run_id, batch(1), "application/json")  # fills the cache
        RuleSetCache.build = staticmethod(lambda c: built.append(c) or original(c))  # type: ignore[method-assign]
        event.listen(db.engine, "before_cursor_execute",
                     lambda conn, cursor, sql, params, context, many: statements.append(sql))
        for step in (2, 3):
            store_batch(db, settings, "cached", batch(step), "application/json")
            store_batch(db, settings, "bare", batch(step), "application/json")
    finally:
        RuleSetCache.build = staticmethod(original)  # type: ignore[method-assign]
        db.dispose()
    assert statements, "the listener saw the ingest transactions"
    reads_config = [sql for sql in statements if re.search(r"\bruns\.config\b(?!_)", sql)]
    assert reads_config == [] and built == []


def test_a_run_stored_before_the_section_check_keeps_ingesting(sqlite_service: LiveService) -> None:
    """A config with a non-mapping section stored before migration 0005 reads it as absent, as then."""
    client = sqlite_service.client
    assert client.put("/api/v1/runs/legacy", json={"config": {"lr": 1}}).status_code == 201
    engine = create_engine(sqlite_service.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE runs SET config = :config, config_sha256 = NULL WHERE run_id = 'legacy'"),
                         {"config": '{"meta_escalation": "x", "training": [1]}'})
    finally:
        engine.dispose()
    answer = client.post("/api/v1/runs/legacy/diagnostics", json={"records": [{"step": 1, "epoch": 0, "loss": 1.0}]})
    assert answer.status_code == 200, answer.text
    assert client.get("/api/v1/runs/legacy").json()["config"] == {"meta_escalation": "x", "training": [1]}


def test_migration_0005_hashes_existing_configs(sqlite_url: str) -> None:
    """Runs stored before 0005 get their config hash, so their ingestion does not read the config either."""
    from monitor.schemas.config_tree import canonical_json, check_config
    from monitor.store.migrate import upgrade

    upgrade(sqlite_url, "0004")
    engine = create_engine(sqlite_url)
    config = {"b": [1, 2], "a": {"monitor": None}, "s": "ü"}
    try:
        with engine.begin() as conn:
            for run_id, stored in (("old", canonical_json(config)), ("empty", "{}")):
                conn.execute(text("INSERT INTO runs (run_id, name, project, config, created_at, updated_at, "
                                  "record_count, decision, health, decision_version) VALUES (:id, :id, 'p', "
                                  ":config, '2026-01-01', '2026-01-01', 0, 'continue', 'ok', 0)"),
                             {"id": run_id, "config": stored})
        upgrade(sqlite_url)
        with engine.connect() as conn:
            hashes = dict(conn.execute(text("SELECT run_id, config_sha256 FROM runs")).all())
    finally:
        engine.dispose()
    max_bytes = 10**6
    assert hashes == {"old": check_config(config, max_depth=32, max_bytes=max_bytes).sha256,
                      "empty": check_config({}, max_depth=32, max_bytes=max_bytes).sha256}
