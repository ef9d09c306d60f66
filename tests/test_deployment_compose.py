"""docker-compose.yml: its structure, and the very commands it runs, against a local PostgreSQL.

No Docker engine is needed: the file is parsed with compose-spec (the Compose schema) and
with PyYAML, interpolated the way Compose does, and then the migrate job's and the
service's own commands and environment are run here with only the database URL pointed
at the test database and the port/worker count adapted to a test machine.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import compose_spec
import httpx
import pytest
import yaml

from tests.support.service import REPO_ROOT, LiveService, free_port

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")
pytestmark = pytest.mark.postgres


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` whose variable is unset, as ``docker compose`` would refuse."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose variable substitution on every string of a parsed file ($$ is a literal $)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if name is None:
            return "$"
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op and op.endswith("?") and missing:
            raise MissingVariable(f"{name}: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return current or ""

    return INTERPOLATION.sub(substitute, value)


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    """The file as Compose sees it: YAML (anchors and merge keys resolved), then interpolated."""
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env)


def load_spec(env: dict[str, str]) -> compose_spec.ComposeSpecification:
    """The interpolated file validated against the Compose specification."""
    project = compose_spec.PyCompose.from_json(json.dumps(load_compose(env)))
    project.validate()
    return project.to_spec()


@pytest.fixture
def compose_env() -> dict[str, str]:
    """The operator's shell: only the variable the file insists on."""
    return {"MONITOR_API_TOKEN": "compose-test-token"}


def test_compose_spec_and_yaml_agree(compose_env: dict[str, str]) -> None:
    raw = COMPOSE_FILE.read_text()
    text = INTERPOLATION.sub(lambda m: json.dumps(interpolate(m.group(0), compose_env))[1:-1], raw)
    merged_by_compose_spec = compose_spec.PyOptions(apply_merge=True).from_yaml(text)
    merged_by_compose_spec.validate()
    by_yaml = load_compose(compose_env)["services"]
    for service in by_yaml.values():  # compose-spec writes ["CMD-SHELL", cmd] in its short form
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test[0] == "CMD-SHELL":
            service["healthcheck"]["test"] = test[1]
    assert merged_by_compose_spec.to_dict()["services"] == by_yaml
    assert merged_by_compose_spec.service_names() == ["postgres", "migrate", "monitor", "retention"]


def test_services_wait_for_each_other_and_check_health(compose_env: dict[str, str]) -> None:
    spec = load_spec(compose_env)
    postgres, migrate, monitor = (spec.services[name] for name in ("postgres", "migrate", "monitor"))
    assert postgres.image == "postgres:16"
    assert "pg_isready" in str(postgres.healthcheck.test)
    assert migrate.depends_on["postgres"].condition.value == "service_healthy"
    assert migrate.restart == "no"
    assert migrate.command == ["python", "-m", "monitor", "migrate"]
    assert monitor.depends_on["migrate"].condition.value == "service_completed_successfully"
    assert monitor.depends_on["postgres"].condition.value == "service_healthy"
    assert "/healthz" in str(monitor.healthcheck.test)
    assert monitor.restart == "unless-stopped"
    command = monitor.command
    assert command[:4] == ["python", "-m", "monitor", "serve"] and "--no-migrate" in command
    assert _option(command, "--workers") == "4" and _option(command, "--host") == "0.0.0.0"
    assert _option(command, "--port") == "8765" and set(monitor.ports) == {"8765:8765"}
    pool = int(monitor.environment["MONITOR_DB_POOL_SIZE"])
    assert int(_option(command, "--workers")) * 2 * pool <= 60, "leave PostgreSQL's 100 connections headroom"
    grace = compose_spec.parse_duration(monitor.stop_grace_period)
    assert grace > float(_option(command, "--graceful-timeout")), "SIGKILL must not cut the graceful shutdown"


def test_database_lives_in_a_named_volume_and_everyone_uses_it(compose_env: dict[str, str]) -> None:
    spec = load_spec(compose_env)
    assert "pgdata" in spec.volumes
    assert any(str(mount).startswith("pgdata:/var/lib/postgresql/data") for mount in spec.services["postgres"].volumes)
    urls = {name: service.environment["MONITOR_DATABASE_URL"]
            for name, service in spec.services.items() if name != "postgres"}
    assert len(set(urls.values())) == 1, urls
    assert next(iter(urls.values())).startswith("postgresql+psycopg://monitor:monitor@postgres:5432/monitor")
    assert spec.services["monitor"].environment["MONITOR_API_TOKEN"] == "compose-test-token"
    assert "maintenance" in spec.services["retention"].profiles  # not started by a plain `up`


def test_token_is_required(compose_env: dict[str, str]) -> None:
    with pytest.raises(MissingVariable, match="MONITOR_API_TOKEN: set a token"):
        load_compose({})
    with pytest.raises(MissingVariable):
        load_compose({"MONITOR_API_TOKEN": ""})


def test_image_is_cpu_only_and_ships_the_migrations() -> None:
    instructions = [line for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()
                    if not line.lstrip().startswith("#")]
    assert any('".[server]"' in line for line in instructions)
    assert not any("torch" in line or "cuda" in line.lower() for line in instructions)
    ignored = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("pyproject.toml", "README.md", "alembic.ini", "migrations/env.py", "monitor/app.py"):
        assert not any(fnmatch.fnmatch(needed, pattern) or needed.startswith(pattern.rstrip("/") + "/")
                       for pattern in ignored), needed


def test_compose_commands_run_against_postgres(compose_env: dict[str, str], postgres_url: str,
                                               tmp_path: Path) -> None:
    services = load_spec(compose_env).services
    migrate_env = _local_env(services["migrate"].environment, postgres_url)
    for _ in range(2):  # a restarted stack runs the job again: it must be idempotent
        done = subprocess.run(_local_command(services["migrate"].command), cwd=REPO_ROOT, env=migrate_env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    port = free_port()
    command = _adapt_serve(services["monitor"].command, port)
    env = _local_env(services["monitor"].environment, postgres_url)
    log_path = tmp_path / "compose-monitor.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    live = LiveService(postgres_url, env["MONITOR_API_TOKEN"], log_path, port=port)
    live.process = process
    try:
        live.wait_ready(90)
        assert httpx.get(f"{live.base_url}/healthz").json()["database"] == "postgresql"
        healthcheck = _local_command(services["monitor"].healthcheck.test[1:])
        probe = [part.replace("127.0.0.1:8765", f"127.0.0.1:{port}") for part in healthcheck]
        assert subprocess.run(probe, timeout=30).returncode == 0
        assert live.client.put("/api/v1/runs/compose", json={}).status_code == 201
        assert "No migrations" not in live.log_tail()
    finally:
        live.close()


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _local_command(command: list[str]) -> list[str]:
    """The container's ``python`` is this interpreter here."""
    return [sys.executable if part == "python" else part for part in command]


def _local_env(environment: dict[str, Any], database_url: str) -> dict[str, str]:
    """The service's environment with the database host swapped for the test database."""
    values = {key: str(value) for key, value in environment.items()}
    assert values["MONITOR_DATABASE_URL"].startswith("postgresql+psycopg://")
    values["MONITOR_DATABASE_URL"] = database_url
    return {**os.environ, "PYTHONUNBUFFERED": "1", **values}


def _adapt_serve(command: list[str], port: int) -> list[str]:
    """Same command, on loopback, a free port and 2 workers (a test box, not a server)."""
    adapted = _local_command(command)
    for option, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--workers", "2")):
        adapted[adapted.index(option) + 1] = value
    return adapted
