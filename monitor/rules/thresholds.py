"""Rule thresholds: the trainer's own limits plus the monitor's knobs, validated once.

The trainer already states most limits in its YAML config (``hyper_lora.lora_max_norm``
etc.), so a run's thresholds are read from that config instead of being configured twice.
Anything invalid raises ``ValueError`` naming the config key, which the API turns into 422.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
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

# Top-level sections read above: present and not null, each must be a mapping (a string there
# used to make every key in it silently fall back to its default).
_SECTIONS: tuple[str, ...] = ("hyper_lora", "recursive_solver", "meta_escalation", "training", "gates", "monitor")

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


@dataclass(frozen=True)
class ConfigProblem:
    """One unusable value: its key path inside the config, a message that repeats no value, a type."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"


class ConfigError(ValueError):
    """The config's thresholds cannot be used; ``problems`` lets the API answer one 422 item each."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        lines = [f"{'.'.join(str(part) for part in item.loc) or 'config'}: {item.msg}" for item in problems]
        super().__init__("invalid thresholds: " + "; ".join(lines))


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
            raise ValueError(f"{len(unknown)} unknown rule(s); known rules: {list(RULE_NAMES)}")
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
            raise ConfigError(_problems(exc, {})) from None

    @classmethod
    def from_run_config(cls, config: dict[str, Any] | None) -> Thresholds:
        """Read the trainer's nested YAML dict; ConfigError names the offending key."""
        if config is None:
            return cls()
        if not isinstance(config, dict):
            raise ConfigError([ConfigProblem((), "run config must be a mapping", "dict_type")])
        _check_sections(config)
        values, sources = _trainer_values(config)
        monitor_values, monitor_sources = _monitor_values(config.get("monitor"))
        values.update(monitor_values)
        sources.update(monitor_sources)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_problems(exc, sources)) from None


class ThresholdsCache:
    """Thresholds by config digest, least recently used dropped first.

    Why: reading thresholds from the config on every ingest cost 64 ms per 1-record batch
    with a 7 MB config; a digest names one config forever, so its thresholds never go stale.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[str, Thresholds] = OrderedDict()
        self._lock = threading.Lock()  # ingest threads and request threads share it

    def get(self, sha256: str, config: Callable[[], dict[str, Any] | None]) -> Thresholds:
        """The thresholds of the config with SHA-256 ``sha256``; ``config()`` is called only on a miss."""
        with self._lock:
            found = self._items.get(sha256)
            if found is not None:
                self._items.move_to_end(sha256)
                return found
        found = stored_config_thresholds(config())  # outside the lock: it may load the config
        with self._lock:
            self._items[sha256] = found
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return found


def stored_config_thresholds(config: dict[str, Any] | None) -> Thresholds:
    """Thresholds of a config already stored: one stored before sections were checked (migration
    0005) reads a non-mapping section as absent, as it did then, so its ingestion keeps working
    (its run page shows the config error)."""
    if isinstance(config, dict):
        config = {key: value for key, value in config.items()
                  if key not in _SECTIONS or value is None or isinstance(value, dict)}
    return Thresholds.from_run_config(config)


def _check_sections(config: dict[str, Any]) -> None:
    """Every section the thresholds are read from is a mapping (or absent, or null)."""
    problems = [ConfigProblem((name,), "must be a mapping (a JSON object) or null", "dict_type")
                for name in _SECTIONS if config.get(name) is not None and not isinstance(config[name], dict)]
    if problems:
        raise ConfigError(problems)


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


def _monitor_values(section: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``monitor:`` section; unknown keys are errors (typos must not pass silently)."""
    if section is None:
        return {}, {}
    problems = [ConfigProblem(("monitor", str(key)), f"unknown key; allowed keys: {list(_MONITOR_KEYS)}",
                              "extra_forbidden") for key in section if key not in _MONITOR_KEYS]
    values = {key: value for key, value in section.items() if value is not None}
    severity = values.get("severity")
    if severity is not None and not isinstance(severity, dict):
        problems.append(ConfigProblem(("monitor", "severity"), "must be a mapping of rule name to 'warning' or "
                                      "'pause'", "dict_type"))
    elif severity is not None:
        problems.extend(ConfigProblem(("monitor", "severity", str(rule)), f"unknown rule; known rules: "
                                      f"{list(RULE_NAMES)}", "value_error") for rule in severity
                        if rule not in RULE_NAMES)
    if problems:
        raise ConfigError(problems)
    return values, {key: f"monitor.{key}" for key in values}


def _problems(exc: ValidationError, sources: dict[str, str]) -> list[ConfigProblem]:
    """One problem per error, located at the config key the bad value came from (never the value)."""
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        field = str(loc[0]) if loc else ""
        path = tuple(sources.get(field, field).split(".")) if field else ()
        problems.append(ConfigProblem((*path, *loc[1:]), error["msg"], error["type"]))
    return problems
