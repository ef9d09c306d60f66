"""``/docs`` with Swagger UI served from our own files (no CDN), so it works offline.

Why: FastAPI's default page loads Swagger UI's JS and CSS from a CDN and its favicon from
fastapi.tiangolo.com; offline, or behind a firewall, ``/docs`` was a blank page. The
vendored files (monitor/static/swagger-ui, Apache-2.0, see its README) are mounted at
``/docs-assets``. ReDoc is not offered (``redoc_url=None``): one offline UI is enough.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
ASSETS = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets; the app must be built with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_DIR), name="docs-assets")

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
