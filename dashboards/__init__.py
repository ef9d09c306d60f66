"""Dashboard pages and the shareable report: jinja2 templates, plotly figures, static assets.

Everything the browser needs (plotly.js included, from the plotly package) is served by
the monitor itself, so the dashboard works on an air-gapped training cluster.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import plotly
from jinja2 import Environment, FileSystemLoader, select_autoescape

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """One template environment per process; autoescaping on (run names are user input)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = format_number
    env.filters["when"] = format_time
    return env


def format_number(value: Any) -> str:
    """Readings for tables: 4 significant digits; 'NaN'/'Infinity' spellings pass through."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_time(value: datetime | None) -> str:
    """UTC timestamps to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "–"


def render(template: str, **context: Any) -> str:
    """The named template rendered with ``context``."""
    return environment().get_template(template).render(**context)


def static_files() -> dict[str, Path]:
    """The files ``/static/<name>`` may serve (a fixed list: no path from the request reaches disk)."""
    files = {path.name: path for path in STATIC_DIR.iterdir() if path.is_file()}
    files["plotly.min.js"] = PLOTLY_JS
    return files


def static_text(name: str) -> str:
    """A static asset's text, for inlining into the self-contained report."""
    return static_files()[name].read_text(encoding="utf-8")
