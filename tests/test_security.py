"""Authentication on every route, tokens kept only as hashes, timing-safe comparison, no leaked secrets.

Routes are enumerated from the application itself (OpenAPI paths *and* the routes
left out of the schema, i.e. the dashboard pages), so a route added later without
the token check fails here instead of shipping open.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import inspect
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import monitor
from monitor import auth
from monitor.api import deps, pages
from monitor.app import create_app
from monitor.settings import Settings
from tests.support.receiver import Receiver
from tests.support.reliability import fire_collapse
from tests.support.service import REPO_ROOT, LiveService

# Reachable without a token, on purpose: probes, the login flow, static assets, the API description.
PUBLIC = {"/healthz", "/login", "/login/check", "/logout", "/static/{name}", "/openapi.json", "/docs",
          "/docs/oauth2-redirect", "/redoc"}
# HTML pages: without a valid token they redirect to the login form instead of answering 401.
PAGES = {"/", "/runs/{run_id}"}
RUN_ID = "sec-run"
PATH_VALUES = {"run_id": RUN_ID, "webhook_id": "1", "delivery_id": "1", "name": "app.js"}
QUERY_VALUES = {"/escalation/decision": {"run_id": RUN_ID}}
BODIES = {"/api/v1/runs/{run_id}/diagnostics": {"records": [{"step": 99, "epoch": 0, "loss": 1.0}]},
          "/api/v1/runs/{run_id}/epochs": {"epoch": 0}, "/api/v1/runs/{run_id}": {},
          "/api/v1/runs/{run_id}/backtest": {}, "/api/v1/webhooks": {"url": "http://127.0.0.1:9/hook"}}


def _flatten(routes: Iterable[Any]) -> Iterator[Any]:
    """Routes with ``path`` and ``methods``; newer FastAPI keeps included routers as lazy wrappers."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):
            yield from route.effective_route_contexts()
        else:
            yield route


def app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the application serves, schema or not."""
    app = create_app(Settings(database_url="sqlite:///:memory:", api_token="unused"))
    found = []
    for route in _flatten(app.routes):
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                found.append((method, route.path))
    return sorted(set(found))


def bad_credentials(token: str) -> list[dict[str, Any]]:
    """Ways of presenting no token or a wrong one (including the right one in the wrong place)."""
    basic = base64.b64encode(f"user:{token}".encode()).decode()
    return [
        {"headers": {}},
        {"headers": {"Authorization": "Bearer wrong-token"}},
        {"headers": {"Authorization": f"Bearer {token[:-1]}"}},  # a prefix of the real one
        {"headers": {"Authorization": f"Bearer {token}x"}},
        {"headers": {"Authorization": f"Basic {basic}"}},
        {"headers": {"Authorization": token}},  # no scheme
        {"headers": {"Authorization": "Bearer"}},
        {"headers": {"Cookie": f"{deps.TOKEN_COOKIE}=wrong-token"}},
        {"headers": {}, "params": {"token": token, "access_token": token}},  # tokens never travel in URLs
    ]


def fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES[match.group(1)], path)


@pytest.fixture
def secured(sqlite_service: LiveService) -> LiveService:
    """A service with one run that has data (a leak would show it)."""
    fire_collapse(sqlite_service.client, RUN_ID)
    return sqlite_service


def test_route_inventory_is_classified() -> None:
    routes = {path for _, path in app_routes()}
    schema_paths = set(create_app(Settings(database_url="sqlite:///:memory:")).openapi()["paths"])
    assert PAGES <= routes and schema_paths <= routes and "/api/v1/runs/{run_id}/diagnostics" in schema_paths
    unknown = {path for path in routes if "{" in path and not set(re.findall(r"\{(\w+)\}", path)) <= set(PATH_VALUES)}
    assert not unknown, f"add sample values for the path parameters of {unknown}"


def test_every_route_refuses_missing_or_wrong_tokens(secured: LiveService) -> None:
    checked = 0
    for method, path in app_routes():
        if path in PUBLIC:
            continue
        url = secured.base_url + fill(path)
        for credentials in bad_credentials(secured.token):
            params = {**QUERY_VALUES.get(path, {}), **credentials.get("params", {})}
            body = BODIES.get(path) if method in ("POST", "PUT", "PATCH") else None
            response = httpx.request(method, url, headers=credentials["headers"], params=params, json=body,
                                     follow_redirects=False, timeout=10)
            where = f"{method} {path} with {credentials}"
            if path in PAGES:
                assert response.status_code == 303, where
                assert response.headers["location"].startswith("/login"), where
            else:
                assert response.status_code == 401, f"{where}: {response.status_code} {response.text[:200]}"
                assert response.json() == {"detail": "missing or invalid bearer token"}, where
                assert response.headers["www-authenticate"] == "Bearer", where
            assert RUN_ID not in response.text and "attention" not in response.text, f"{where} leaked data"
            checked += 1
    assert checked >= 20 * len(bad_credentials(secured.token)) // 2
    run = secured.json("GET", f"/api/v1/runs/{RUN_ID}")
    assert run["record_count"] == 30, "a refused write must not be stored"
    hooks = secured.json("GET", "/api/v1/webhooks")
    assert hooks == [], "a refused webhook create must not be stored"


def test_unauthenticated_garbage_bodies_are_refused_and_not_stored(secured: LiveService) -> None:
    for method, path in app_routes():
        if path in PUBLIC or method not in ("POST", "PUT"):
            continue
        response = httpx.request(method, secured.base_url + fill(path), content=b"{not json",
                                 headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"
    assert secured.json("GET", f"/api/v1/runs/{RUN_ID}")["record_count"] == 30


def test_token_is_checked_before_the_body_is_parsed(secured: LiveService) -> None:
    """FastAPI parses a JSON body before route dependencies run; the token gate answers first."""
    for body in (b"{not json", b'{"records": "wrong type"}', b"\xff\xfe"):
        for path in (f"/api/v1/runs/{RUN_ID}/diagnostics", "/api/v1/webhooks", "/api/v1/no-such-route"):
            response = httpx.post(f"{secured.base_url}{path}", content=body,
                                  headers={"Content-Type": "application/json", "Authorization": "Bearer wrong"})
            assert response.status_code == 401, (path, body, response.text)
            assert response.json() == {"detail": "missing or invalid bearer token"}


def test_the_right_token_opens_every_route(secured: LiveService) -> None:
    """Guards the test above: the refusals come from the token, not from bad sample requests."""
    cookie = {"Cookie": f"{deps.TOKEN_COOKIE}={secured.token}"}
    for method, path in app_routes():
        if path in PUBLIC or method == "DELETE" or "deliveries/{delivery_id}" in path:
            continue
        headers = cookie if path in PAGES else secured.auth_headers
        body = BODIES.get(path) if method in ("POST", "PUT") else None
        response = httpx.request(method, secured.base_url + fill(path), headers=headers, json=body,
                                 params=QUERY_VALUES.get(path, {}), follow_redirects=False, timeout=30)
        assert response.status_code not in (401, 303), f"{method} {path}: {response.status_code}"


def test_login_form_refuses_wrong_tokens_without_echoing_them(sqlite_service: LiveService) -> None:
    wrong = "wrong-" + os.urandom(8).hex()
    response = httpx.post(f"{sqlite_service.base_url}/login", data={"token": wrong, "next": "/"},
                          follow_redirects=False)
    assert response.status_code == 401 and wrong not in response.text
    assert deps.TOKEN_COOKIE not in response.headers.get("set-cookie", "")
    check = httpx.get(f"{sqlite_service.base_url}/login/check", cookies={deps.TOKEN_COOKIE: wrong})
    assert check.json() == {"signed_in": False}


def _database_text(database_url: str) -> bytes:
    """Every byte the database holds for us: SQLite files (WAL included) or all PostgreSQL rows as text."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    chunks = []
    with psycopg.connect(dsn) as conn:
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            chunks += [str(row[0]) for row in conn.execute(f'SELECT t::text FROM "{table}" t')]
    return "\n".join(chunks).encode()


def test_tokens_are_stored_only_as_hashes(database_url: str, token: str, tmp_path: Path) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "monitor", "token", "create", "--name", "sec", "--database-url", database_url],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True)
    new_token = created.stdout.strip().splitlines()[-1]
    service = LiveService(database_url, token, tmp_path / "service.log", env={"MONITOR_LOG_LEVEL": "DEBUG"}).start()
    try:
        for presented in (new_token, token):
            response = httpx.put(f"{service.base_url}/api/v1/runs/hashed", json={},
                                 headers={"Authorization": f"Bearer {presented}"})
            assert response.status_code in (200, 201)
        httpx.get(f"{service.base_url}/api/v1/runs", headers={"Authorization": f"Bearer {new_token}x"})
        stored = _database_text(database_url)
        assert new_token.encode() not in stored and token.encode() not in stored
        assert hashlib.sha256(new_token.encode()).hexdigest().encode() in stored
        log = service.log_tail(10**7)
        assert new_token not in log and token not in log, "a token reached the service log"
    finally:
        service.close()


def test_token_comparison_is_constant_time() -> None:
    """Timing measurements are flaky; the code path is checked instead."""
    source = textwrap.dedent(inspect.getsource(auth.TokenVerifier._matches))  # is_valid and cached_verdict use it
    tree = ast.parse(source)
    assert "hmac.compare_digest(" in source
    loops = [node for node in ast.walk(tree) if isinstance(node, ast.For)]
    assert loops, "every known hash must be compared"
    for loop in loops:
        assert not any(isinstance(node, (ast.Return, ast.Break)) for node in ast.walk(loop)), \
            "no early exit: the time taken must not depend on which token matched"
    # The API dependency and the login form both go through TokenVerifier (is_valid or its cache).
    assert "token_is_valid(" in inspect.getsource(deps.require_token)
    helper = inspect.getsource(deps.token_is_valid)
    assert "verifier.cached_verdict(" in helper and "verifier.is_valid" in helper
    assert "verifier.is_valid" in inspect.getsource(pages.login)


def test_no_plain_comparison_of_credentials_anywhere() -> None:
    """No ``==`` / ``in`` on tokens, secrets or signatures in the service's code."""
    suspicious = re.compile(r"(token|secret|signature|digest|password)", re.IGNORECASE)
    harmless = re.compile(r"(token_command|TOKEN_PREFIX|secret is None)")
    offenders = []
    for path in Path(monitor.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                                                     for op in node.ops):
                text = ast.unparse(node)
                if suspicious.search(text) and not harmless.search(text):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {text}")
    assert not offenders, offenders


# ----------------------------------------------------------------------------------- webhooks
@pytest.fixture
def debug_service(sqlite_url: str, token: str, tmp_path: Path) -> Iterator[LiveService]:
    """The service logging at DEBUG: the most it ever writes."""
    live = LiveService(sqlite_url, token, tmp_path / "service.log",
                       env={"MONITOR_LOG_LEVEL": "DEBUG", "MONITOR_WEBHOOK_BACKOFF_BASE_SECONDS": "0.1"}).start()
    try:
        yield live
    finally:
        live.close()


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def test_webhook_secrets_appear_only_in_the_create_response(debug_service: LiveService, receiver: Receiver) -> None:
    given = _secret()
    created = debug_service.json("POST", "/api/v1/webhooks", json={"url": receiver.url, "secret": given})
    generated = debug_service.json("POST", "/api/v1/webhooks", json={"url": receiver.url})["secret"]
    assert created["secret"] == given
    receiver.fail_next(1)  # one failed attempt: its error is stored and shown, and must not carry the secret
    fire_collapse(debug_service.client, "hooked")
    receiver.wait_delivered(4, timeout=30)
    shown = [debug_service.client.get(path).text for path in (
        "/api/v1/webhooks", f"/api/v1/webhooks/{created['id']}", f"/api/v1/webhooks/{created['id']}/deliveries",
        "/api/v1/deliveries", "/api/v1/deliveries?status=failed", "/api/v1/runs/hooked/events")]
    arrived = [item.body.decode() + repr(item.headers) for item in receiver.snapshot()]
    log = debug_service.log_tail(10**7)
    for secret in (given, generated):
        key = secret.removeprefix("whsec_")
        for where, text in [("API", t) for t in shown] + [("receiver", t) for t in arrived] + [("log", log)]:
            assert key not in text, f"webhook secret found in {where}"


def test_rejected_webhook_create_does_not_echo_the_secret(sqlite_service: LiveService) -> None:
    secret = _secret()
    bodies: list[Any] = [{"secret": secret}, {"secret": secret, "url": "ftp://x"}, [secret], secret,
                         {"url": "http://127.0.0.1:9/h", "secret": secret[:20]},
                         {"url": "http://127.0.0.1:9/h", "secret": secret, "events": []}]
    for body in bodies:
        response = sqlite_service.client.post("/api/v1/webhooks", json=body)
        assert response.status_code == 422, body
        assert secret.removeprefix("whsec_")[:16] not in response.text, f"422 echoed the secret for {body!r}"
        detail = response.json()["detail"]
        assert isinstance(detail, str) or all(set(error) == {"type", "loc", "msg"} for error in detail), detail
