"""What-if replays of stored runs: when would each rule have fired under other thresholds?"""

from __future__ import annotations

import copy
from typing import Any

from monitor.floats import encode_float, encode_tree
from monitor.rules.backtest import BacktestResult, backtest
from monitor.rules.describe import param_source
from monitor.rules.ruleset import RuleSet
from monitor.store.database import Database
from monitor.store.diagnostics import iter_batch_readings
from monitor.store.epochs import iter_epoch_readings
from monitor.store.runs import get_run


def merge_config(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base`` (nested sections merge, leaves replace)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dotted_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["hyper_lora.lora_max_norm=2.5"]`` -> nested dict; values parsed as YAML scalars."""
    import yaml

    result: dict[str, Any] = {}
    for pair in pairs:
        path, sep, raw = pair.partition("=")
        if not sep or not path:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        node = result
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return result


def run_backtest(db: Database, run_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Replay a stored run with its config merged with ``overrides``; JSON-ready summary."""
    with db.read_session() as session:
        run = get_run(session, run_id)
        config = merge_config(run.config or {}, overrides)
        ruleset = RuleSet.from_run_config(config)
        # The run's escalation start (its PUT field) wins over the config's, as in the live decision.
        start = run.escalation_start_epoch if run.escalation_start_epoch is not None else ruleset.escalation_start_epoch
        result = backtest(ruleset, iter_batch_readings(session, run_id), iter_epoch_readings(session, run_id),
                          start_epoch=start)
    return summarise(run_id, ruleset, result, start)


def summarise(run_id: str, ruleset: RuleSet, result: BacktestResult, start: int | None = None) -> dict[str, Any]:
    """The parts a person needs: first pause, firing spans, and each transition."""
    pause = result.first_pause
    return {
        "run_id": run_id,
        "escalation_start_epoch": start,
        "thresholds": encode_tree({name: param_source(ruleset, name) for name in ruleset.params}),
        "config_report": encode_tree(ruleset.report),
        "batches": result.batches,
        "epochs": result.epochs,
        "first_pause": None if pause is None else {"step": pause.step, "epoch": pause.epoch,
                                                    "rules": list(pause.rules)},
        "spans": {rule: [list(span) for span in spans] for rule, spans in result.spans.items()},
        "transitions": [
            {"rule": t.rule, "rank": t.rank, "kind": t.kind, "severity": t.severity, "metric": t.metric,
             "value": encode_float(t.value), "threshold": encode_float(t.threshold), "step": t.step,
             "epoch": t.epoch}
            for t in result.transitions
        ],
    }


def format_report(summary: dict[str, Any]) -> str:
    """A terminal-friendly rendering of :func:`summarise`'s output."""
    lines = [f"backtest of run {summary['run_id']}: {summary['batches']} batches, {summary['epochs']} epoch summaries"]
    pause = summary["first_pause"]
    if pause:
        lines.append(f"first pause: step {pause['step']} (epoch {pause['epoch']}) by {', '.join(pause['rules'])}")
    else:
        lines.append("first pause: never")
    lines.append("firing spans (start_step -> end_step):")
    for rule, spans in sorted(summary["spans"].items()):
        shown = ", ".join(f"{start}->{'end' if end is None else end}" for start, end in spans[:8])
        more = f" (+{len(spans) - 8} more)" if len(spans) > 8 else ""
        lines.append(f"  {rule:<20} {shown}{more}")
    if not summary["spans"]:
        lines.append("  (no rule fired)")
    return "\n".join(lines)
