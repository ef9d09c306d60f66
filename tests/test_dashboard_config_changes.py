"""The run page lists config changes: which keys, from what to what, and the decision they flipped (16.8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.receiver import drive_collapse
from tests.support.service import LiveService

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HOSTILE_KEY = "<img src=x onerror=window.__pwned=1>"


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (make browser)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_run_page_lists_the_config_change_that_flipped_pause(sqlite_service: LiveService, browser: Browser) -> None:
    drive_collapse(sqlite_service, "flip")
    demoted = {"monitor": {"batch_for": 3, "severity": {"attention_collapse": "warning"}}, "notes": {HOSTILE_KEY: 1}}
    assert sqlite_service.client.put("/api/v1/runs/flip", json={"config": demoted}).status_code == 200
    page = browser.new_page()
    page.goto(f"{sqlite_service.base_url}/runs/flip")
    page.fill("#token", sqlite_service.token)
    page.click("button[type=submit]")
    section = page.locator("#config-changes")
    section.wait_for(timeout=30_000)
    [row] = section.locator("tr.config-change").all()
    text = row.inner_text()
    assert "monitor.severity" in text and '{"attention_collapse": "warning"}' in text and "(absent)" in text
    assert "pause → continue" in " ".join(text.split())
    assert "notes: (absent)" in text and "onerror=window.__pwned=1" in text  # shown as text, not markup
    assert section.locator("img").count() == 0 and page.evaluate("() => window.__pwned") is None


def test_run_page_says_when_nothing_changed(sqlite_service: LiveService, browser: Browser) -> None:
    assert sqlite_service.client.put("/api/v1/runs/calm", json={"config": {"lr": 1}}).status_code == 201
    page = browser.new_page()
    page.goto(f"{sqlite_service.base_url}/runs/calm")
    page.fill("#token", sqlite_service.token)
    page.click("button[type=submit]")
    page.locator("#config-changes").wait_for(timeout=30_000)
    assert "has not changed" in page.locator("#config-changes").inner_text()
