"""Rule thresholds: the trainer's own limits plus the monitor's knobs, validated once.

The trainer already states most limits in its YAML config (``hyper_lora.lora_max_norm``
etc.), so a run's thresholds are read from that config instead of being configured twice.
Anything invalid raises ``ValueError`` naming the config key, which the API turns into 422.
"""

from __future__ import annotations

import re

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.rules.types import Severity

# Every rule the engine knows, with its default severity (overridable per run).
DEFAULT_SEVERITY: dict[str, Severity] = {
    "lora_norm": "warning",
    "lora_growth": "warning",
    "stop_saturation": "warning",
    "attention_weak": "warning",
    "attention_collapse": "pause",
    "logit_range": "warning",
    "accuracy_drop": "pause",
    "nan_streak": "pause",
    "grad_explosion": "pause",
}
RULE_NAMES: tuple[str, ...] = tuple(DEFAULT_SEVERITY)

# Field -> where the trainer config keeps it (first hit wins for multi-place keys).
_TRAINER_KEYS: dict[str, tuple[str, ...]] = {
    "lora_max_norm": ("hyper_lora.lora_max_norm",),
    "logit_clamp_threshold": ("recursive_solver.logit_clamp_threshold",),
    "accuracy_drop_threshold": ("meta_escalation.accuracy_drop_threshold",),
    "attention_collapse_threshold": ("meta_escalation.attention_collapse_threshold",),
    "escalation_start_epoch": ("meta_escalation.start_epoch",),
}
# The per-epoch gates live in different sections in different trainer versions.
_GATE_SECTIONS = ("", "training.", "meta_escalation.", "gates.")
_TRAINER_KEYS.update(
    {gate: tuple(section + gate for section in _GATE_SECTIONS)
     for gate in ("max_consecutive_nan_streak_per_epoch", "max_grad_explosion_events_per_epoch")}
)

_MONITOR_KEYS: tuple[str, ...] = (
    "stop_logit_var_min",
    "stop_var_warmup_steps",
    "attention_healthy_min",
    "attention_entropy_max",
    "lora_growth_ratio",
    "lora_growth_window_epochs",
    "accuracy_ema_decay",
    "batch_for",
    "batch_resolve",
    "epoch_for",
    "epoch_resolve",
    "severity",
)


class Thresholds(BaseModel):
    """All limits the rules compare against; strict types, no NaN, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    # From the trainer's config sections.
    lora_max_norm: float = Field(default=3.0, gt=0)
    logit_clamp_threshold: float = Field(default=50.0, gt=0)
    accuracy_drop_threshold: float = Field(default=0.05, gt=0, le=1)
    attention_collapse_threshold: float = Field(default=0.1, ge=0, le=1)
    max_consecutive_nan_streak_per_epoch: int = Field(default=3, ge=0)
    max_grad_explosion_events_per_epoch: int = Field(default=5, ge=0)
    escalation_start_epoch: int | None = Field(default=None, ge=0)
    # The monitor's own knobs (``monitor:`` section).
    stop_logit_var_min: float = Field(default=0.5, ge=0)
    stop_var_warmup_steps: int = Field(default=200, ge=0)
    attention_healthy_min: float = Field(default=0.3, ge=0, le=1)
    attention_entropy_max: float = Field(default=5.0, gt=0)
    lora_growth_ratio: float = Field(default=0.30, gt=0)
    lora_growth_window_epochs: int = Field(default=5, ge=1)
    accuracy_ema_decay: float = Field(default=0.9, ge=0, lt=1)
    batch_for: int = Field(default=10, ge=1)
    batch_resolve: int = Field(default=50, ge=1)
    epoch_for: int = Field(default=1, ge=1)
    epoch_resolve: int = Field(default=2, ge=1)
    severity: dict[str, Literal["warning", "pause"]] = Field(default_factory=dict)

    @field_validator("severity")
    @classmethod
    def _known_rules(cls, severity: dict[str, Severity]) -> dict[str, Severity]:
        unknown = sorted(set(severity) - set(RULE_NAMES))
        if unknown:
            raise ValueError(f"unknown rule(s) {_names(unknown)}; known rules: {list(RULE_NAMES)}")
        return severity

    def severity_for(self, rule: str) -> Severity:
        """The run's severity of ``rule``: override, else default (unknown rules warn)."""
        return self.severity.get(rule, DEFAULT_SEVERITY.get(rule, "warning"))

    def effective(self) -> dict[str, Any]:
        """Every value in force, severities resolved for all rules (for display)."""
        values = self.model_dump(exclude={"severity"})
        values["severity"] = {rule: self.severity_for(rule) for rule in RULE_NAMES}
        return values

    def with_overrides(self, overrides: dict[str, Any]) -> Thresholds:
        """A validated copy with some fields replaced (e.g. for a backtest); ValueError names the field."""
        try:
            return type(self).model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:
            raise ValueError(_describe(exc, {})) from None

    @classmethod
    def from_run_config(cls, config: dict[str, Any] | None) -> Thresholds:
        """Read the trainer's nested YAML dict; ValueError names the offending key."""
        if config is None:
            return cls()
        if not isinstance(config, dict):
            raise ValueError(f"run config must be a mapping, got {type(config).__name__}")
        values, sources = _trainer_values(config)
        monitor_values, monitor_sources = _monitor_values(config.get("monitor"))
        values.update(monitor_values)
        sources.update(monitor_sources)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ValueError(_describe(exc, sources)) from None


def _lookup(config: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) for a dotted path; a non-mapping section counts as not found."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _trainer_values(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Values found in the trainer's own sections; null means 'use the default'."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for field, paths in _TRAINER_KEYS.items():
        for path in paths:
            found, value = _lookup(config, path)
            if found and value is not None:
                values[field], sources[field] = value, path
                break
    return values, sources


def _monitor_values(section: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``monitor:`` section; unknown keys are errors (typos must not pass silently)."""
    if section is None:
        return {}, {}
    if not isinstance(section, dict):
        raise ValueError(f"monitor: must be a mapping, got {type(section).__name__}")
    unknown = sorted(str(key) for key in section if key not in _MONITOR_KEYS)
    if unknown:
        raise ValueError(f"monitor.{_names(unknown[:1])}: unknown key; allowed keys: {list(_MONITOR_KEYS)}")
    values = {key: value for key, value in section.items() if value is not None}
    if "severity" in values and not isinstance(values["severity"], dict):
        raise ValueError("monitor.severity: must be a mapping of rule name to 'warning' or 'pause'")
    return values, {key: f"monitor.{key}" for key in values}


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def _names(names: list[str]) -> str:
    """Unknown names as a message may show them: plain names (a typo) as they are, anything
    else (markup, NUL, very long) only counted -- error answers never echo such input."""
    plain = [name for name in names if _PLAIN_NAME.fullmatch(name)]
    hidden = len(names) - len(plain)
    return ", ".join(plain + ([f"{hidden} more not shown"] if hidden else []))


def _describe(exc: ValidationError, sources: dict[str, str]) -> str:
    """One line per error, each naming the config key the bad value came from (never the value,
    nor a key the client made up: error answers do not echo input)."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = loc[0] if loc else "?"
        known = [part for part in loc[1:] if part in RULE_NAMES]
        key = ".".join([sources.get(field, field), *known])
        lines.append(f"{key}: {error['msg']}")
    return "invalid thresholds: " + "; ".join(lines)
