"""The dashboard in a real headless Chromium: login enforced, charts, limits, firing spans, live, zoom."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from monitor.floats import encode_tree
from monitor.scenarios.traces import Trace, collapse_run
from tests.support.service import LiveService

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RUN_ID = "collapse-1"
FIRST_PART = 1300  # steps sent before the page opens; the collapse fires around step 1200


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (make browser)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def trace() -> Trace:
    return collapse_run(epochs=60, steps_per_epoch=25)  # 1500 steps, attention collapses mid-way


def send(service: LiveService, batches: list[dict[str, Any]]) -> None:
    for start in range(0, len(batches), 500):
        body = {"records": encode_tree(batches[start:start + 500])}
        response = service.client.post(f"/api/v1/runs/{RUN_ID}/diagnostics", json=body)
        assert response.status_code == 200, response.text


def start_run(service: LiveService, trace: Trace, steps: int) -> None:
    response = service.client.put(f"/api/v1/runs/{RUN_ID}", json={"name": "Collapse demo", "config": trace.config})
    assert response.status_code == 201, response.text
    send(service, [b for b in trace.batches if b["step"] < steps])


def reported(trace: Trace, metric: str, first: int, end: int) -> int:
    """Batches in [first, end) that carry ``metric`` (the trace leaves some readings out)."""
    return sum(1 for b in trace.batches if first <= b["step"] < end and b.get(metric) is not None)


def sign_in(page: Page, service: LiveService, token: str) -> None:
    page.fill("#token", token)
    page.click("button[type=submit]")


def chart_js(metric: str, expression: str) -> str:
    """A JS function over one chart's plotly div (functions, not strings: the page's CSP forbids eval)."""
    return f"() => {{ const gd = document.getElementById('chart-{metric}'); return {expression}; }}"


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def test_pages_need_a_token(sqlite_service: LiveService, browser: Browser, trace: Trace) -> None:
    start_run(sqlite_service, trace, 200)
    page = browser.new_page()
    page.goto(f"{sqlite_service.base_url}/runs/{RUN_ID}")
    assert page.url == f"{sqlite_service.base_url}/login?next=/runs/{RUN_ID}"
    assert page.locator("#login-form").is_visible()
    assert page.locator(".js-plotly-plot").count() == 0
    assert "Collapse demo" not in page.content() and "attention" not in page.content()
    page.goto(f"{sqlite_service.base_url}/")
    assert "/login" in page.url and "Collapse demo" not in page.content()
    assert page.request.get(f"{sqlite_service.base_url}/runs/{RUN_ID}/data").status == 401
    sign_in(page, sqlite_service, "not-the-token")
    assert "not valid" in page.locator(".error").inner_text()
    assert page.context.cookies() == []
    page.close()


POINTS_AND_NAN = "gd.data[0].x.length + gd.data[1].x.length"  # NaN readings are markers on top


def test_run_page_charts_limits_spans_live_and_zoom(sqlite_service: LiveService, browser: Browser, trace: Trace,
                                                      tmp_path: Path) -> None:
    start_run(sqlite_service, trace, FIRST_PART)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = console_errors(page)
    page.goto(f"{sqlite_service.base_url}/runs/{RUN_ID}")
    sign_in(page, sqlite_service, sqlite_service.token)
    page.wait_for_url(f"{sqlite_service.base_url}/runs/{RUN_ID}")
    cookie = next(c for c in context.cookies() if c["name"] == "monitor_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    check_charts(page, trace)
    page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
    check_live_update(page, sqlite_service, trace)
    page.screenshot(path=str(tmp_path / "run-page-live.png"), full_page=True)
    check_zoom_fetches_detail(page, trace)
    assert errors == []
    page.goto(f"{sqlite_service.base_url}/logout")
    assert "/login" in page.url
    page.goto(f"{sqlite_service.base_url}/runs/{RUN_ID}")
    assert "/login" in page.url and page.locator(".js-plotly-plot").count() == 0
    context.close()


def check_charts(page: Page, trace: Trace) -> None:
    """Every chart drawn with its points, limits as dashed lines, the collapse shaded."""
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 11")
    assert page.evaluate("() => document.querySelector('.js-plotly-plot').data[0].x.length") == FIRST_PART
    assert page.evaluate(chart_js("attention_max", POINTS_AND_NAN)) == reported(trace, "attention_max", 0, FIRST_PART)
    shapes = page.evaluate(chart_js("attention_max", "gd.layout.shapes.map(s => s.name)"))
    assert "threshold:attention_collapse_threshold" in shapes and "threshold:attention_healthy_min" in shapes
    assert "span:attention_collapse:0" in shapes
    assert page.locator("#chart-attention_max .layer-below .shapelayer path").count() >= 1  # drawn, not just listed
    assert page.locator("#chart-attention_max .layer-above .shapelayer path").count() >= 2
    assert page.locator("#decision").inner_text() == "pause"
    assert page.locator("#health").inner_text() == "paused"
    assert "attention_collapse" in page.locator("#firing-list").inner_text()


def check_live_update(page: Page, service: LiveService, trace: Trace) -> None:
    """The run goes on while the page is open: points, last step, spans and firing list follow."""
    send(service, [b for b in trace.batches if b["step"] >= FIRST_PART])
    page.wait_for_function("() => document.getElementById('last-step').textContent.trim() === '1499'",
                           timeout=15_000)
    page.wait_for_function("() => document.querySelector('.js-plotly-plot').data[0].x.length === 1500",
                           timeout=15_000)
    span_end = "gd.layout.shapes.find(s => s.name === '{}').x1"
    assert page.evaluate(chart_js("attention_max", span_end.format("span:attention_collapse:0"))) == 1499
    # Every other span ends where the store says it ended: its resolved event, else the last step.
    rule_events = service.json("GET", f"/api/v1/runs/{RUN_ID}/events")["rule_events"]
    ends: dict[str, int] = {}
    for event in rule_events:
        if event["rank"] == 0:
            ends[event["rule"]] = event["step"] if event["kind"] == "resolved" else 1499
    firing = page.locator("#firing-list").inner_text()
    for rule, end in ends.items():
        chart = "attention_max" if rule.startswith("attention") else None
        if chart:
            assert page.evaluate(chart_js(chart, span_end.format(f"span:{rule}:0"))) == end, rule
        assert (rule in firing) == (end == 1499), rule  # the firing list is the open spans
    assert "attention_collapse" in firing


def check_zoom_fetches_detail(page: Page, trace: Trace) -> None:
    """Zooming one chart refetches that step window for every chart."""
    page.evaluate(chart_js("loss", "Plotly.relayout(gd, {'xaxis.range[0]': 1100, 'xaxis.range[1]': 1200})"))
    expected = reported(trace, "attention_max", 1100, 1201)
    page.wait_for_function(chart_js(
        "attention_max", f"{POINTS_AND_NAN} === {expected} && Math.min(...gd.data[0].x) >= 1100"), timeout=10_000)
    assert page.evaluate(chart_js("attention_max", "gd.layout.xaxis.range")) == [1100, 1200]


def test_run_list_shows_health(sqlite_service: LiveService, browser: Browser, trace: Trace) -> None:
    start_run(sqlite_service, trace, FIRST_PART)
    page = browser.new_page()
    page.goto(f"{sqlite_service.base_url}/")
    sign_in(page, sqlite_service, sqlite_service.token)
    page.wait_for_url(f"{sqlite_service.base_url}/")
    row = page.locator("table.runs tbody tr").first
    assert "Collapse demo" in row.inner_text()
    assert row.locator(".badge.health-paused").inner_text() == "paused"
    assert row.locator(".badge.decision-pause").inner_text() == "pause"
    assert str(FIRST_PART - 1) in row.inner_text()
    page.close()
