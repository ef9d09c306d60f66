"""Plotly figure builders: series charts with threshold lines and firing spans, decision timeline.

Figures are plain plotly JSON (dicts), not ``plotly.graph_objects``: building a dozen
validated Figure objects per poll costs more than the database read they display, and
the same dicts serve the live page (via JSON) and the self-contained report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from monitor.rules.compiled import CompiledRule
from monitor.rules.detectors import BoundCheck
from monitor.rules.ruleset import RuleSet

LINE_COLOUR = "#1f5fa8"
SEVERITY_COLOUR = {"pause": "#c62828", "warning": "#ef8a00"}
SPAN_OPACITY = 0.16

TITLES: dict[str, str] = {
    "lora_norm_mean": "HyperLoRA delta norm (mean)",
    "lora_norm_max": "HyperLoRA delta norm (max)",
    "stop_logit_var": "Stop-logit variance",
    "attention_max": "Attention peak (max)",
    "attention_entropy": "Attention entropy (nats)",
    "logit_min": "Solver logit min",
    "logit_max": "Solver logit max",
    "accuracy": "Batch accuracy",
    "loss": "Loss",
    "nan_count": "Non-finite values per batch",
    "grad_norm": "Gradient norm",
    "attention_max_mean": "Attention peak (mean of each map's max)",
    "attention_peak_ratio": "Attention peak / uniform (1 = uniform)",
    "attention_entropy_norm": "Attention entropy / ln(cells) (1 = uniform)",
    "stop_logit_mean": "Stop-logit mean",
    "stop_logit_abs_mean": "Stop-logit |mean|",
    "stop_prob_mean": "Stop probability (mean)",
    "lora_norm_preclamp_mean": "HyperLoRA delta norm before the clamp (mean)",
    "lora_norm_preclamp_max": "HyperLoRA delta norm before the clamp (max)",
}

# Which charts a rule's firing span is shaded on (besides the metric its event names).
RULE_CHARTS: dict[str, tuple[str, ...]] = {
    "lora_norm": ("lora_norm_max", "lora_norm_preclamp_max"),
    "lora_growth": ("lora_norm_mean",),
    "stop_saturation": ("stop_logit_abs_mean", "stop_logit_mean"),
    "stop_variance": ("stop_logit_var",),
    "attention_weak": ("attention_max", "attention_max_mean"),
    "attention_collapse": ("attention_max", "attention_max_mean", "attention_peak_ratio", "attention_entropy",
                           "attention_entropy_norm"),
    "loss_spike": ("loss",),
    "logit_range": ("logit_min", "logit_max"),
    "accuracy_drop": ("accuracy",),
    "nan_streak": ("nan_count",),
    "grad_explosion": ("grad_norm",),
}


def threshold_lines(ruleset: RuleSet) -> dict[str, list[dict[str, Any]]]:
    """Per chart, the bounds the rules compare it against (label, value, severity of the rule).

    Taken from the compiled rules: every bound on a plain reading (or its fallbacks) draws
    a line on that reading's chart; ratios, reductions and growth have no line to draw.
    """
    lines: dict[str, list[dict[str, Any]]] = {}
    for rule in ruleset.rules:
        for where, source, check in _bounds(rule):
            for side in ("above", "below"):
                bound = getattr(check, side)
                if bound is None:
                    continue
                label = _bound_label(where.get(side) if side in where else where.get("outside"), side)
                for expression in source.expressions:
                    lines.setdefault(expression.text, []).append(
                        {"key": label, "value": bound(None), "rule": rule.name, "severity": rule.severity})
    return lines


def _bounds(rule: CompiledRule) -> list[tuple[dict[str, Any], Any, BoundCheck]]:
    """(spec part, source, bound check) of every plain bound in a rule."""
    if rule.conditions:
        return [(spec, cond.source, cond.check) for spec, cond in zip(rule.spec.get("any") or [], rule.conditions)]
    if isinstance(rule.detector, BoundCheck) and rule.source is not None and rule.spec.get("reduce") is None:
        spec = (rule.spec.get("any") or [rule.spec])[0]  # an any: of one condition compiles to a plain bound
        return [(spec, rule.source, rule.detector)]
    return []


def _bound_label(bound: Any, side: str) -> str:
    """The param's name (with a minus for a negated one) or the literal number."""
    if isinstance(bound, list):
        bound = bound[1] if side == "above" else bound[0]
    if isinstance(bound, dict) and "param" in bound:
        return ("-" if bound.get("scale", 1) < 0 else "") + bound["param"]
    return f"{side} {bound}"


def firing_spans(rule_events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair fired -> resolved events per (rule, rank); a span still open has ``end`` None.

    Epoch rules' events carry no step and cannot be placed on a step axis; they are left
    to the events table.
    """
    open_spans: dict[tuple[str, int], dict[str, Any]] = {}
    spans: list[dict[str, Any]] = []
    for event in rule_events:
        key = (event["rule"], event["rank"])
        if event["step"] is None:
            continue
        if event["kind"] == "fired" and key not in open_spans:
            charts = set(RULE_CHARTS.get(event["rule"], ())) | {event["metric"]}
            span = {"rule": event["rule"], "rank": event["rank"], "severity": event["severity"],
                    "metric": event["metric"], "start": event["step"], "end": None, "charts": sorted(charts)}
            open_spans[key] = span
            spans.append(span)
        elif event["kind"] == "resolved" and key in open_spans:
            open_spans.pop(key)["end"] = event["step"]
    return spans


def threshold_shapes(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dashed horizontal lines across the whole chart."""
    return [
        {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": item["value"],
         "y1": item["value"], "name": f"threshold:{item['key']}",
         "line": {"color": SEVERITY_COLOUR[item["severity"]], "width": 1.5, "dash": "dash"}}
        for item in lines
    ]


def threshold_annotations(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The limit's name and value above its line; alternate sides so close limits stay legible."""
    return [
        {"xref": "paper", "x": 1 - index % 2, "xanchor": "right" if index % 2 == 0 else "left", "yref": "y",
         "y": item["value"], "yanchor": "bottom", "text": f"{item['key']} = {item['value']:g}", "showarrow": False,
         "font": {"size": 10, "color": SEVERITY_COLOUR[item["severity"]]}}
        for index, item in enumerate(lines)
    ]


def span_shapes(spans: Iterable[dict[str, Any]], metric: str, last_step: int | None) -> list[dict[str, Any]]:
    """Shaded step ranges where a rule about ``metric`` was firing (open spans run to the last step)."""
    shapes = []
    for span in spans:
        if metric not in span["charts"]:
            continue
        end = span["end"] if span["end"] is not None else max(last_step or span["start"], span["start"])
        shapes.append({
            "type": "rect", "xref": "x", "yref": "paper", "x0": span["start"], "x1": max(end, span["start"] + 1),
            "y0": 0, "y1": 1, "layer": "below", "line": {"width": 0}, "opacity": SPAN_OPACITY,
            "fillcolor": SEVERITY_COLOUR.get(span["severity"], SEVERITY_COLOUR["warning"]),
            "name": f"span:{span['rule']}:{span['rank']}",
        })
    return shapes


def metric_figure(metric: str, series: dict[str, Any], lines: Sequence[dict[str, Any]],
                  spans: Sequence[dict[str, Any]], last_step: int | None) -> dict[str, Any]:
    """One reading's chart: the series, NaN/Inf markers on top, limits dashed, firing spans shaded."""
    steps = series["steps"]
    main = {"type": "scatter", "mode": "lines" if len(steps) > 60 else "lines+markers", "name": metric,
            "x": steps, "y": series["values"], "line": {"color": LINE_COLOUR, "width": 1.3},
            "marker": {"size": 4}, "hovertemplate": "step %{x}<br>%{y:.4g}<extra></extra>"}
    bad = series["nonfinite"]
    markers = {"type": "scatter", "mode": "markers", "name": "NaN/Inf", "yaxis": "y2",
               "x": [item["step"] for item in bad], "y": [0.96] * len(bad),
               "text": [f"{item['value']} (rank {item['rank']}, x{item['count']})" for item in bad],
               "marker": {"symbol": "x", "size": 9, "color": SEVERITY_COLOUR["pause"]},
               "hovertemplate": "step %{x}: %{text}<extra></extra>"}
    layout = base_layout(TITLES.get(metric, metric), height=270)
    layout["yaxis2"] = {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}
    layout["shapes"] = threshold_shapes(lines) + span_shapes(spans, metric, last_step)
    layout["annotations"] = threshold_annotations(lines)
    layout["meta"] = {"metric": metric, "source": series["source"],
                      "points_in_window": series["points_in_window"],
                      "nonfinite_total": series["nonfinite_total"]}
    return {"data": [main, markers], "layout": layout}


def decision_figure(decisions: Sequence[dict[str, Any]], last_step: int | None) -> dict[str, Any]:
    """Continue/pause over steps as a step line (decisions are stored only when they change)."""
    xs: list[int] = [0]
    ys: list[int] = [0]
    for item in decisions:
        if item["step"] is not None:
            xs.append(item["step"])
            ys.append(1 if item["decision"] == "pause" else 0)
    xs.append(max(last_step or 0, xs[-1]))
    ys.append(ys[-1])
    trace = {"type": "scatter", "mode": "lines", "x": xs, "y": ys, "line": {"shape": "hv", "color": "#c62828"},
             "fill": "tozeroy", "fillcolor": "rgba(198,40,40,0.15)", "name": "decision",
             "hovertemplate": "step %{x}<extra></extra>"}
    layout = base_layout("Escalation decision", height=170)
    layout["yaxis"].update({"tickvals": [0, 1], "ticktext": ["continue", "pause"], "range": [-0.15, 1.15],
                            "fixedrange": True})
    return {"data": [trace], "layout": layout}


def base_layout(title: str, height: int) -> dict[str, Any]:
    """Quiet, readable defaults shared by every chart."""
    return {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "height": height,
        "margin": {"l": 55, "r": 15, "t": 34, "b": 34},
        "showlegend": False,
        "hovermode": "closest",
        "plot_bgcolor": "#ffffff",
        "paper_bgcolor": "#ffffff",
        "xaxis": {"title": {"text": "step", "standoff": 4}, "gridcolor": "#eceff3", "zeroline": False},
        "yaxis": {"gridcolor": "#eceff3", "zeroline": False, "automargin": True},
    }
