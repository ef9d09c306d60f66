"""Chart series of a run: downsampled server-side so a million-batch run answers quickly."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from monitor.api.deps import DbDep, SettingsDep, require_token
from monitor.api.errors import unprocessable
from monitor.api.read_slots import run_read
from monitor.api.runs import RunId
from monitor.schemas.diagnostics import MAX_INDEX
from monitor.settings import Settings
from monitor.store.database import Database
from monitor.store import runs
from monitor.store.series import MAX_POINTS, MIN_POINTS, SeriesWindow, UnknownMetric, parse_metrics, read_series

router = APIRouter(prefix="/api/v1/runs", tags=["series"], dependencies=[Depends(require_token)])

MetricsParam = Annotated[str | None, Query(description="Comma-separated readings or extra.<name>; default all")]
PointsParam = Annotated[int | None, Query(ge=MIN_POINTS, le=MAX_POINTS, description="Points per metric")]
RankParam = Annotated[int | None, Query(ge=0, le=65535, description="One rank; default all ranks merged")]
StepParam = Annotated[int | None, Query(ge=0, le=MAX_INDEX)]


def default_max_points(settings: Settings) -> int:
    """Points per chart series when the caller does not say (the setting, within bounds)."""
    return min(max(settings.default_max_points, MIN_POINTS), MAX_POINTS)


def series_window(settings: Settings, metrics: str | None, max_points: int | None, rank: int | None,
                  step_min: int | None, step_max: int | None) -> SeriesWindow:
    """Validate the query into a window; 422 for an unknown metric, too many, or an inverted window."""
    try:
        names = parse_metrics(metrics)
    except UnknownMetric as exc:
        raise unprocessable(["query", "metrics"], str(exc)) from exc
    if len(names) > settings.series_max_metrics:
        raise unprocessable(["query", "metrics"], f"at most {settings.series_max_metrics} metrics per request "
                            f"(MONITOR_SERIES_MAX_METRICS)", type="too_long")
    if step_min is not None and step_max is not None and step_min > step_max:
        raise unprocessable(["query", "step_min"], "step_min is greater than step_max")
    return SeriesWindow(names, max_points or default_max_points(settings), rank, step_min, step_max)


@router.get("/{run_id}/series")
async def get_series(request: Request, run_id: RunId, db: DbDep, settings: SettingsDep, metrics: MetricsParam = None,
               max_points: PointsParam = None, rank: RankParam = None, step_min: StepParam = None,
               step_max: StepParam = None) -> dict[str, Any]:
    """Per metric: steps and values (at most ``max_points``, extremes kept) plus NaN/Inf listed apart.

    Without ``rank`` all ranks are merged (their envelope: a spike on any rank shows).
    ``source`` says whether raw rows or rollup buckets of that width were read. Served in
    a read slot (``monitor.api.read_slots``): 503 with Retry-After when all stay busy.
    """
    window = series_window(settings, metrics, max_points, rank, step_min, step_max)
    series, last_step = await run_read(request, _read, db, run_id, window)
    return {"run_id": run_id, "rank": rank, "step_min": step_min, "step_max": step_max,
            "max_points": window.max_points, "last_step": last_step, "series": series}


def _read(db: Database, run_id: str, window: SeriesWindow) -> tuple[dict[str, Any], int | None]:
    """The run's series and last step (in a worker thread)."""
    with db.read_session() as session:
        run = runs.get_run(session, run_id)
        return read_series(session, run, window), run.last_step
