"""Scoring one detector's per-epoch answers against a labelled trace, and the corpus summary.

The unit is the trainer's question at the start of epoch E. ``first_pause`` is the first E
answered pause, ``lead = onset - first_pause`` (positive = paused before the accuracy started
to fall), "paused before the drop" = first_pause <= the first epoch whose accuracy is 5 points
below its best (a pause answered for epoch E lands before epoch E trains). A warning counts
once per (rule, onset): a rule that keeps firing is one warning, not one per epoch.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.corpus.trace import CorpusTrace


@dataclass(frozen=True)
class EpochAnswer:
    """One answer: paused?, which rules were firing (any severity), any pause-severity rule firing."""

    epoch: int
    pause: bool
    firing: tuple[str, ...] = ()
    pause_signal: bool = False
    pausing: tuple[str, ...] = ()  # the rules that made this answer a pause


@dataclass
class TraceScore:
    name: str
    kind: str
    label: str
    onset: int | None
    drop: int | None
    epochs: int
    first_warning: int | None
    first_pause: int | None
    first_pause_signal: int | None
    lead_pause: int | None
    lead_warning: int | None
    paused_before_drop: bool
    pause_epochs: int
    warnings: int
    first_rules: tuple[str, ...]
    pause_rules: dict[str, int]  # rule -> first epoch it was among the pause reasons


def _first(answers: list[EpochAnswer], test: Any) -> EpochAnswer | None:
    return next((a for a in answers if test(a)), None)


def score_trace(trace: CorpusTrace, answers: list[EpochAnswer]) -> TraceScore:
    """Per-trace figures for one detector."""
    warned = _first(answers, lambda a: a.firing or a.pause)
    paused = _first(answers, lambda a: a.pause)
    signal = _first(answers, lambda a: a.pause_signal or a.pause)
    onset, drop = trace.onset_epoch, trace.drop_epoch()
    onsets, previous = 0, set()
    for answer in answers:
        current = set(answer.firing) | ({"pause"} if answer.pause and not answer.firing else set())
        onsets += len(current - previous)
        previous = current
    pause_rules: dict[str, int] = {}
    for answer in answers:
        for rule in answer.pausing if answer.pause else ():
            pause_rules.setdefault(rule, answer.epoch)
    lead = lambda a: None if a is None or onset is None else onset - a.epoch  # noqa: E731
    return TraceScore(
        trace.name, trace.kind, trace.label, onset, drop, trace.asked_epochs,
        warned.epoch if warned else None, paused.epoch if paused else None, signal.epoch if signal else None,
        lead(paused), lead(warned), paused is not None and (drop is None or paused.epoch <= drop),
        sum(a.pause for a in answers), onsets, tuple(sorted(warned.firing)) if warned else (), pause_rules,
    )


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarize(scores: list[TraceScore]) -> dict[str, Any]:
    """The figures the issue names (and a few more), over one detector's scores."""
    out: dict[str, Any] = {}
    for label, prefix in (("collapse", "collapses"), ("failure", "failures")):
        rows = [s for s in scores if s.label == label]
        out[f"{prefix}_total"] = len(rows)
        out[f"{prefix}_paused_before_drop"] = sum(s.paused_before_drop for s in rows)
        out[f"{prefix}_missed"] = sum(s.first_pause is None for s in rows)
        out[f"{prefix}_warned"] = sum(s.first_warning is not None for s in rows)
        key = "" if label == "collapse" else "_failures"
        out[f"median_pause_lead_epochs{key}"] = _median([s.lead_pause for s in rows if s.lead_pause is not None])
        out[f"median_warning_lead_epochs{key}"] = _median([s.lead_warning for s in rows if s.lead_warning is not None])
    healthy = [s for s in scores if s.label == "healthy"]
    epochs = sum(s.epochs for s in healthy)
    out.update(
        healthy_traces=len(healthy), healthy_epochs=epochs,
        healthy_false_pauses=sum(s.pause_epochs for s in healthy),
        healthy_traces_paused=sum(s.first_pause is not None for s in healthy),
        healthy_false_warnings=sum(s.warnings for s in healthy),
        healthy_false_warnings_per_100_epochs=round(100.0 * sum(s.warnings for s in healthy) / epochs, 2)
        if epochs else None,
    )
    out.update(_trusted(scores))
    return out


def _trusted(scores: list[TraceScore]) -> dict[str, Any]:
    """Pauses by rules that never paused a healthy trace: a lead earned by a rule that also pauses
    healthy runs (e.g. a size-dependent attention bound on 30x30 grids) is not a detection."""
    noisy = sorted({rule for s in scores if s.label == "healthy" for rule in s.pause_rules})
    out: dict[str, Any] = {"rules_pausing_healthy": noisy}
    for label, prefix in (("collapse", "collapses"), ("failure", "failures")):
        firsts = [(s, min((e for r, e in s.pause_rules.items() if r not in noisy), default=None))
                  for s in scores if s.label == label]
        out[f"{prefix}_paused_before_drop_by_rules_quiet_on_healthy"] = sum(
            first is not None and (s.drop is None or first <= s.drop) for s, first in firsts)
    return out


def rows_as_dicts(scores: list[TraceScore]) -> list[dict[str, Any]]:
    return [asdict(score) for score in scores]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def trace_table(scores: list[TraceScore]) -> str:
    """Markdown: one row per trace for our service."""
    head = ("trace", "label", "onset", "drop", "1st warn", "1st pause", "lead warn", "lead pause",
            "paused<drop", "pause ep.", "warnings", "first rules")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in scores:
        cells = (s.name, s.label, s.onset, s.drop, s.first_warning, s.first_pause, s.lead_warning, s.lead_pause,
                 s.paused_before_drop if s.label != "healthy" else None, s.pause_epochs, s.warnings, s.first_rules)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def comparison_table(summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per detector (ours first)."""
    head = ("detector", "collapses paused<drop", "... by rules quiet on healthy", "collapses missed", "median pause lead", "median warn lead",
            "failures paused<drop", "healthy false pauses (epochs)", "healthy runs paused",
            "false warnings /100 ep")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summaries.items():
        cells = (name, f"{s['collapses_paused_before_drop']}/{s['collapses_total']}",
                 f"{s['collapses_paused_before_drop_by_rules_quiet_on_healthy']}/{s['collapses_total']}",
                 s["collapses_missed"],
                 s["median_pause_lead_epochs"], s["median_warning_lead_epochs"],
                 f"{s['failures_paused_before_drop']}/{s['failures_total']}", s["healthy_false_pauses"],
                 f"{s['healthy_traces_paused']}/{s['healthy_traces']}", s["healthy_false_warnings_per_100_epochs"])
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)
