"""Chart series of a run: downsampled server-side so a million-batch run answers quickly."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from monitor.api.deps import DbDep, SettingsDep, require_token
from monitor.api.runs import RunId
from monitor.schemas.diagnostics import MAX_INDEX
from monitor.settings import Settings
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
    """Validate the query into a window; 422 names an unknown metric or an inverted window."""
    try:
        names = parse_metrics(metrics)
    except UnknownMetric as exc:
        raise HTTPException(422, str(exc)) from exc
    if step_min is not None and step_max is not None and step_min > step_max:
        raise HTTPException(422, f"step_min ({step_min}) is greater than step_max ({step_max})")
    return SeriesWindow(names, max_points or default_max_points(settings), rank, step_min, step_max)


@router.get("/{run_id}/series")
def get_series(run_id: RunId, db: DbDep, settings: SettingsDep, metrics: MetricsParam = None,
               max_points: PointsParam = None, rank: RankParam = None, step_min: StepParam = None,
               step_max: StepParam = None) -> dict[str, Any]:
    """Per metric: steps and values (at most ``max_points``, extremes kept) plus NaN/Inf listed apart.

    Without ``rank`` all ranks are merged (their envelope: a spike on any rank shows).
    ``source`` says whether raw rows or rollup buckets of that width were read.
    """
    window = series_window(settings, metrics, max_points, rank, step_min, step_max)
    with db.read_session() as session:
        run = runs.get_run(session, run_id)
        series = read_series(session, run, window)
        last_step = run.last_step
    return {"run_id": run_id, "rank": rank, "step_min": step_min, "step_max": step_max,
            "max_points": window.max_points, "last_step": last_step, "series": series}
