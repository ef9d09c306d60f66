"""What the run list, the run page, its live updates and the report show, read from the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from dashboards.figures import decision_figure, firing_spans, metric_figure, span_shapes, threshold_lines
from monitor.config_changes import CONFIG_CHANGED
from monitor.rules.describe import describe
from monitor.rules.errors import RuleError
from monitor.rules.ruleset import RuleSet
from monitor.store import events, runs
from monitor.store.models import Run
from monitor.store.rule_states import load_states
from monitor.store.series import SeriesWindow, list_deliveries, metrics_with_data, read_series

EVENT_LIMIT = 5000
Progress = Callable[[str], None]


def run_summary(run: Run) -> dict[str, Any]:
    """The run's headline figures, JSON-ready."""
    return {
        "run_id": run.run_id, "name": run.name, "project": run.project, "health": run.health,
        "decision": run.decision, "last_step": run.last_step, "last_epoch": run.last_epoch,
        "record_count": run.record_count, "escalation_start_epoch": run.escalation_start_epoch,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "updated_at": run.updated_at.isoformat() if run.updated_at else None,
    }


def list_page(session: Session, limit: int = 500) -> dict[str, Any]:
    """Every run with its health, most recently updated first."""
    return {"runs": [run_summary(run) for run in runs.list_runs(session, limit=limit)]}


def effective_rules(run: Run) -> tuple[RuleSet, str | None]:
    """The run's rules; a stored config that no longer validates shows the shipped rules plus why."""
    try:
        return RuleSet.from_run_config(run.config or {}), None
    except RuleError as exc:
        return RuleSet.from_run_config({}), str(exc)


def run_page(session: Session, run: Run, max_points: int, progress: Progress | None = None) -> dict[str, Any]:
    """Everything the run page (and the report) draws: charts, limits, spans, decisions, alerts."""
    ruleset, thresholds_error = effective_rules(run)
    lines = threshold_lines(ruleset)
    rule_events = events.list_rule_events(session, run.run_id, limit=EVENT_LIMIT)
    decisions = events.list_decisions(session, run.run_id, limit=EVENT_LIMIT)
    config_changes = [item for item in events.list_run_events(session, run.run_id, limit=EVENT_LIMIT)
                      if item["kind"] == CONFIG_CHANGED]
    spans = firing_spans(rule_events)
    metrics = metrics_with_data(session, run.run_id)
    if progress:
        progress(f"reading {len(metrics)} series, at most {max_points} points each")
    series = read_series(session, run, SeriesWindow(tuple(metrics), max_points))
    figures = {metric: metric_figure(metric, series[metric], lines.get(metric, []), spans, run.last_step)
               for metric in metrics}
    state = {"run_id": run.run_id, "metrics": metrics, "figures": figures, "max_points": max_points,
             "decision_figure": decision_figure(decisions, run.last_step), "last_step": run.last_step,
             "live": False, "poll_ms": 0}
    return {
        "run": run_summary(run), "config": run.config,
        "rules": describe(ruleset, load_states(session, run.run_id).values()),
        "thresholds_error": thresholds_error, "metrics": metrics, "rule_events": rule_events,
        "decisions": decisions, "spans": spans, "deliveries": list_deliveries(session, run.run_id),
        "config_changes": config_changes, "state": state,
    }


def make_live(context: dict[str, Any], poll_ms: int) -> dict[str, Any]:
    """The page variant of :func:`run_page`'s context: the browser polls every ``poll_ms``."""
    context["state"].update(live=True, poll_ms=poll_ms)
    return context


def run_update(session: Session, run: Run, window: SeriesWindow) -> dict[str, Any]:
    """A poll or zoom answer: points in the window, the run's status, spans and decision line."""
    spans = firing_spans(events.list_rule_events(session, run.run_id, limit=EVENT_LIMIT))
    decisions = events.list_decisions(session, run.run_id, limit=EVENT_LIMIT)
    return {
        "run": run_summary(run),
        "firing": [span for span in spans if span["end"] is None],
        "series": read_series(session, run, window),
        "span_shapes": {metric: span_shapes(spans, metric, run.last_step) for metric in window.metrics},
        "decision_count": len(decisions),
        "decision_figure": decision_figure(decisions, run.last_step),
    }
