"""Glue between storage and the pure rule engine: ingest, evaluate, decide, queue alerts.

Everything here runs inside one write transaction holding the run's lock, so the rule
state, the events, the decision and the outbox rows commit together or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from monitor.alerts import outbox
from monitor.metrics import observe_rules
from monitor.rules.decision import Decision, decide
from monitor.rules.engine import RuleEngine
from monitor.rules.config_sections import RuleSetCache
from monitor.rules.ruleset import RuleSet
from monitor.rules.types import BatchReading, EpochReading, RuleState, RuleTransition
from monitor.store import events
from monitor.store.decision_board import StoredAnswer, stage
from monitor.store.models import Run
from monitor.store.rule_states import StateKey, load_states, save_states


_RULESETS = RuleSetCache()


def ruleset_for(run: Run) -> RuleSet:
    """The run's effective rules (shipped file + its config), compiled once per process and config.

    By config digest from the process's cache, so ingestion does not load the config;
    runs stored before migration 0005 (no digest) read their config each time.
    """
    if run.config_sha256 is None:
        return RuleSetCache.build(run.config)
    return _RULESETS.get(run.config_sha256, lambda: run.config)


def evaluate_batches(session: Session, run: Run, readings: Sequence[BatchReading], public_url: str) -> None:
    """Feed newly stored readings (in evaluation order) through the rules and persist what changed."""
    if not readings:
        return
    thresholds = ruleset_for(run)
    engine = RuleEngine(thresholds)
    states = load_states(session, run.run_id, ranks={reading.rank for reading in readings})
    transitions: list[RuleTransition] = []
    now = time.time()
    last_of_rank = {reading.rank: index for index, reading in enumerate(readings)}
    for index, reading in enumerate(readings):
        seen = now if last_of_rank[reading.rank] == index else None  # staleness needs a rank's last record only
        transitions.extend(engine.evaluate_batch(states, reading, now=seen))
    observe_rules("batch", len(readings), transitions)
    _persist(session, run, states, transitions, thresholds, public_url)


def evaluate_epoch(session: Session, run: Run, reading: EpochReading, public_url: str) -> None:
    """Feed one closed epoch through the epoch rules and persist what changed."""
    thresholds = ruleset_for(run)
    states = load_states(session, run.run_id, ranks=(reading.rank,))
    transitions = RuleEngine(thresholds).evaluate_epoch(states, reading)
    observe_rules("epoch", 1, transitions)
    if run.last_epoch is None or reading.epoch > run.last_epoch:
        run.last_epoch = reading.epoch
    if run.closed_epoch is None or reading.epoch > run.closed_epoch:
        run.closed_epoch = reading.epoch
    _persist(session, run, states, transitions, thresholds, public_url)


def _persist(
    session: Session,
    run: Run,
    states: dict[StateKey, RuleState],
    transitions: list[RuleTransition],
    thresholds: RuleSet,
    public_url: str,
) -> None:
    """Save states, record events, refresh the decision, and queue webhooks for what changed."""
    save_states(session, run.run_id, states)
    events.add_rule_events(session, run.run_id, transitions)
    verdict, body = decision_answer(run, states.values(), thresholds)
    decision_changed = verdict.decision != run.decision
    run.health = verdict.health
    run.decision = verdict.decision
    run.decision_body = answer_json(body)
    run.decision_version = (run.decision_version or 0) + 1
    stage(session, StoredAnswer(run.run_id, run.decision_version, verdict.decision, run.decision_body))
    link = dashboard_link(public_url, run.run_id)
    for item in transitions:
        outbox.enqueue(session, run.run_id, f"rule.{item.kind}", _transition_data(run, item, link))
    if decision_changed:
        events.add_decision(session, run.run_id, verdict.decision, body["reasons"], run.last_step, run.last_epoch)
        data = {"run_id": run.run_id, "run_name": run.name, "decision": verdict.decision,
                "reasons": body["reasons"], "actions": body["actions"], "step": run.last_step,
                "epoch": run.last_epoch, "dashboard_url": link}
        outbox.enqueue(session, run.run_id, f"decision.{verdict.decision}", data)


def refresh_decision(session: Session, run: Run, public_url: str) -> None:
    """Decide again after the run's config or escalation start changed (PUT), with no new readings.

    Same bookkeeping as ingestion: the stored answer is rewritten, and a changed decision
    is recorded and alerted on.
    """
    _persist(session, run, load_states(session, run.run_id), [], ruleset_for(run), public_url)


def sweep_stale(session: Session, run: Run, public_url: str, now: float | None = None) -> int:
    """Time sweep of the stale-stream rules for one run (caller holds the run's lock); transitions made."""
    ruleset = ruleset_for(run)
    states = load_states(session, run.run_id)
    transitions = RuleEngine(ruleset).sweep(states, time.time() if now is None else now)
    if transitions:
        observe_rules("sweep", 0, transitions)
        _persist(session, run, states, transitions, ruleset, public_url)
    return len(transitions)


def decision_answer(run: Run, states: Iterable[RuleState], thresholds: RuleSet,
                    for_epoch: int | None = None) -> tuple[Decision, dict[str, Any]]:
    """The decision and the whole ``GET /escalation/decision`` body (JSON-safe: NaN spelled out).

    It answers "may I escalate in epoch ``for_epoch``?"; the stored answer is for
    :func:`default_question_epoch`.
    """
    start = start_epoch(run, thresholds)
    asked = default_question_epoch(run) if for_epoch is None else for_epoch
    verdict = decide(states, thresholds, run.last_epoch, run.last_step, start, for_epoch=asked)
    body = verdict.to_dict()
    body.update(run_id=run.run_id, epoch=run.last_epoch, step=run.last_step, escalation_start_epoch=start)
    return verdict, body


def default_question_epoch(run: Run) -> int | None:
    """The epoch a trainer asks about unless it says: the one after the last closed epoch.

    The trainer asks at the start of epoch E, having closed E-1. A run that never closes
    epochs is asked about the highest epoch its records reached (None before any).
    """
    if run.closed_epoch is not None:
        return run.closed_epoch + 1
    return run.last_epoch


def answer_json(body: dict[str, Any]) -> str:
    """The answer as the compact JSON text that is stored and served."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def start_epoch(run: Run, thresholds: RuleSet) -> int | None:
    """The run's escalation start epoch: the PUT field wins over ``meta_escalation.start_epoch``."""
    if run.escalation_start_epoch is not None:
        return run.escalation_start_epoch
    return thresholds.escalation_start_epoch


def dashboard_link(public_url: str, run_id: str) -> str:
    """Where a person reading an alert should look."""
    return f"{public_url.rstrip('/')}/runs/{run_id}"


def _transition_data(run: Run, item: RuleTransition, link: str) -> dict[str, Any]:
    """Webhook data for a fired/resolved rule."""
    return {
        "run_id": run.run_id,
        "run_name": run.name,
        "rule": item.rule,
        "rank": item.rank,
        "kind": item.kind,
        "severity": item.severity,
        "metric": item.metric,
        "value": item.value,
        "threshold": item.threshold,
        "step": item.step,
        "epoch": item.epoch,
        "note": item.note,
        "decision": run.decision,
        "dashboard_url": link,
    }
