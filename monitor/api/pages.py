"""Dashboard pages: run list, run page with live charts, login/logout, static assets.

Pages take the same tokens as the API: from the Authorization header or from the
``monitor_token`` cookie that the login form sets (HttpOnly, SameSite=Strict). A page
asked for without a valid token redirects to the login form and shows no data. Tokens
never travel in URLs (they would end up in logs, history and Referer headers).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

import dashboards
from dashboards import views
from monitor.api.deps import TOKEN_COOKIE, DbDep, SettingsDep, presented_token, require_token
from monitor.api.read_slots import run_read
from monitor.api.runs import RunId
from monitor.api.series import MetricsParam, PointsParam, StepParam, default_max_points, series_window
from monitor.schemas.diagnostics import MAX_INDEX
from monitor.store import runs
from monitor.store.database import Database
from monitor.store.runs import RunNotFound
from monitor.store.series import SeriesWindow

router = APIRouter(include_in_schema=False)
COOKIE_MAX_AGE = 30 * 24 * 3600
POLL_MS = 2000
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
}


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """An HTML answer with the headers every page carries."""
    return HTMLResponse(dashboards.render(template, **context), status_code=status_code, headers=PAGE_HEADERS)


def _signed_in(request: Request) -> bool:
    return request.app.state.verifier.is_valid(presented_token(request))


def _to_login(request: Request) -> RedirectResponse:
    """303 to the login form, remembering where the visitor wanted to go."""
    return RedirectResponse(f"/login?next={quote(request.url.path, safe='/')}", status_code=303)


def _safe_next(target: str | None) -> str:
    """Only same-site paths (no ``//host`` or backslash tricks): the form must not be an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(char) < 32 for char in target):  # browsers drop tabs/newlines: "/\t/host" is "//host"
        return "/"
    return target


@router.get("/", response_class=HTMLResponse)
def run_list(request: Request, db: DbDep) -> Response:
    """Every run with its health, last step and decision."""
    if not _signed_in(request):
        return _to_login(request)
    with db.read_session() as session:
        context = views.list_page(session)
    return _page("runs.html", **context)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: RunId, db: DbDep, settings: SettingsDep) -> Response:
    """One run: charts with limits and firing spans, decisions, alerts, thresholds; polls for more."""
    if not _signed_in(request):
        return _to_login(request)
    try:
        with db.read_session() as session:
            context = views.run_page(session, runs.get_run(session, run_id), default_max_points(settings))
    except RunNotFound:
        return _page("not_found.html", status_code=404, run_id=run_id)
    return _page("run.html", **views.make_live(context, POLL_MS))


@router.get("/runs/{run_id}/data", dependencies=[Depends(require_token)])
async def run_data(request: Request, run_id: RunId, db: DbDep, settings: SettingsDep, metrics: MetricsParam = None,
             max_points: PointsParam = None, step_min: StepParam = None, step_max: StepParam = None,
             after: Annotated[int | None, Query(ge=-1, le=MAX_INDEX)] = None) -> JSONResponse:
    """The page's poll (``after`` = last step it has) and zoom (``step_min``/``step_max``) answer."""
    if after is not None:
        step_min, step_max = after + 1, None
    window = series_window(settings, metrics, max_points, None, step_min, step_max)
    body = await run_read(request, _run_update, db, run_id, window)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _run_update(db: Database, run_id: str, window: SeriesWindow) -> dict[str, Any]:
    """The page's update (in a worker thread, in a read slot: it is a series read)."""
    with db.read_session() as session:
        return views.run_update(session, runs.get_run(session, run_id), window)


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str | None = None) -> HTMLResponse:  # noqa: A002 - the conventional name
    """The token form (the token is POSTed, never put in a URL)."""
    return _page("login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token; on success set the HttpOnly cookie and go where the visitor was headed."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    if not await run_in_threadpool(request.app.state.verifier.is_valid, token):
        return _page("login.html", status_code=401, next=target, error="That token is not valid.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, max_age=COOKIE_MAX_AGE, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.get("/login/check")
def login_check(request: Request) -> JSONResponse:
    """Whether the cookie is valid. A link followed from an alert arrives without the Strict
    cookie, so the login page asks here (same-site) and goes straight on if already signed in."""
    return JSONResponse({"signed_in": _signed_in(request)}, headers={"Cache-Control": "no-store"})


@router.get("/logout")
def logout() -> RedirectResponse:
    """Forget the cookie."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """Our JS/CSS and plotly.min.js from the installed plotly package (no CDN: works offline)."""
    path = dashboards.static_files().get(name)
    if path is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})
