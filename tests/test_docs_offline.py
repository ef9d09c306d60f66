"""``/docs`` works offline: every asset it loads is served by the service itself (16.9).

Before: FastAPI's page loaded Swagger UI from cdn.jsdelivr.net and its favicon from
fastapi.tiangolo.com, so offline it was a blank page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, sync_playwright

from tests.support.service import LiveService

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ASSET = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def test_every_docs_asset_is_local_and_served(sqlite_service: LiveService) -> None:
    page = sqlite_service.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = ASSET.findall(page.text)
    assert len(assets) >= 3, assets  # the bundle, the stylesheet, the favicon
    assert not re.search(r"https?://|//[a-z]", page.text, re.IGNORECASE), "no absolute URL anywhere in /docs"
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), url
        served = sqlite_service.client.get(url)
        assert served.status_code == 200, url
        assert CONTENT_TYPES[Path(urlsplit(url).path).suffix] in served.headers["content-type"], url
    assert sqlite_service.client.get("/redoc").status_code == 404  # not offered: it would need a CDN too


def test_docs_assets_need_no_token_and_stay_in_their_folder(sqlite_service: LiveService) -> None:
    import httpx

    assert httpx.get(f"{sqlite_service.base_url}/docs-assets/swagger-ui.css").status_code == 200
    assert httpx.get(f"{sqlite_service.base_url}/docs-assets/..%2F..%2Fsettings.py").status_code == 404


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (make browser)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.browser
def test_docs_render_with_every_other_host_unreachable(sqlite_service: LiveService, browser: Browser) -> None:
    """Chromium with every request off the service refused: Swagger UI still lists the operations."""
    own = urlsplit(sqlite_service.base_url).netloc
    refused: list[str] = []

    def only_the_service(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page = browser.new_page()
    page.route("**/*", only_the_service)
    page.goto(f"{sqlite_service.base_url}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() > 10
    assert refused == []
