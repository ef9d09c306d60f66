"""A run's effective rules: the shipped file, merged with the run config's ``monitor:`` section.

``RuleSet.from_run_config`` is the one entry point: it resolves params from the trainer's
YAML, merges ``monitor.rules`` over the shipped rules field by field, compiles them, and
keeps a ``config_report`` of what came from where. Compiled sets are cached per process,
keyed by the config's digest (ingestion compiles a run's rules once, not per request).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.rules.compiled import CompiledRule
from monitor.rules.compiler import compile_rule
from monitor.rules.errors import RuleError, from_validation, problem
from monitor.rules.monitor_section import MonitorSection, parse_monitor_section
from monitor.rules.params import ParamValue, resolve_params
from monitor.rules.spec import DETECTORS, RuleSpec, RulesFile

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.yaml")
_CACHE_SIZE = 256


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules of one run config, its params and the report of where they came from."""

    rules: tuple[CompiledRule, ...]
    params: dict[str, ParamValue]
    report: dict[str, Any]
    digest: str
    by_name: dict[str, CompiledRule] = field(default_factory=dict)

    @property
    def batch_rules(self) -> tuple[CompiledRule, ...]:
        return tuple(rule for rule in self.rules if rule.kind == "batch")

    @property
    def escalation_start_epoch(self) -> int | None:
        value = self.params.get("escalation_start_epoch")
        return None if value is None or value.value is None else int(value.value)

    @property
    def escalation_enabled(self) -> bool:
        value = self.params.get("escalation_enabled")
        return value is None or value.value is not False

    def param(self, name: str, epoch: int | None = None) -> Any:
        """A param's value (at ``epoch`` when it has phases)."""
        return self.params[name].at(epoch)

    def severity_for(self, rule: str) -> str:
        compiled = self.by_name.get(rule)
        return compiled.severity if compiled else "warning"

    @classmethod
    def from_run_config(cls, config: dict[str, Any] | None) -> RuleSet:
        """The rules in force for ``config``; RuleError locates every bad field from the config root."""
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise RuleError([problem([], "dict_type", "run config must be a mapping")])
        text = json.dumps(config, sort_keys=True, default=str, allow_nan=True)
        return _cached(hashlib.sha256(text.encode()).hexdigest(), text)


@lru_cache(maxsize=_CACHE_SIZE)
def _cached(digest: str, text: str) -> RuleSet:
    return build(json.loads(text), digest)


@lru_cache(maxsize=1)
def shipped() -> RulesFile:
    """The shipped checklist (validated once per process)."""
    return load_rules_text(DEFAULT_RULES_PATH.read_text())


def load_rules_text(text: str) -> RulesFile:
    """Parse and validate a rules file's YAML; RuleError locates bad fields from the file root."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RuleError([problem([], "yaml", f"not valid YAML{where}")]) from None
    try:
        return RulesFile.model_validate(data or {})
    except ValidationError as exc:
        raise RuleError(from_validation(exc, [])) from None


def build(config: dict[str, Any], digest: str = "", rules_file: RulesFile | None = None) -> RuleSet:
    """Resolve, merge and compile (uncached); the rules CLI uses it with its own file."""
    base = rules_file or shipped()
    section = parse_monitor_section(config.get("monitor"), tuple(base.params))
    resolution = resolve_params(base.params, config, section.param_values, section.keys)
    merged, origins, summary = merge_rules(base.rules, section)
    compiled, errors = [], []
    for spec_dict, loc in zip(merged, origins):
        try:
            spec = RuleSpec.model_validate(spec_dict)
        except ValidationError as exc:
            errors.extend(from_validation(exc, loc))
            continue
        rule, problems = compile_rule(spec, resolution.values, loc)
        errors.extend(problems)
        if rule is not None:
            compiled.append(rule)
    if errors:
        raise RuleError(errors)
    report = {"used": resolution.used, "defaults": resolution.defaults, "phases": resolution.phases,
              "rules": summary, "notes": resolution.notes}
    rules = tuple(compiled)
    return RuleSet(rules, resolution.values, report, digest, {rule.name: rule for rule in rules})


def merge_rules(shipped_rules: list[dict[str, Any]], section: MonitorSection) -> tuple[list, list, dict]:
    """Shipped rules with the run's rules merged over them by name (field by field).

    A run rule that names a detector replaces the shipped rule's detector instead of
    adding a second one. Returns merged dicts, each one's loc, and added/overridden/disabled.
    """
    by_name: OrderedDict[str, dict[str, Any]] = OrderedDict()
    origins: dict[str, list[str | int]] = {}
    for index, rule in enumerate(shipped_rules):
        name = str(rule.get("name"))
        by_name[name], origins[name] = copy.deepcopy(rule), ["rules", index]
    added, overridden = [], []
    for index, rule in enumerate(section.rules):
        name = str(rule.get("name"))
        loc: list[str | int] = ["monitor", "rules", index]
        if name in by_name and loc != origins.get(name):
            base = by_name[name]
            if any(key in rule for key in DETECTORS):
                dropped = set(DETECTORS)
                if "any" in rule or "stale" in rule:
                    dropped |= {"reading", "fallback", "reduce", "pick"}
                base = {key: value for key, value in base.items() if key not in dropped}
            by_name[name] = {**base, **copy.deepcopy(rule)}
            overridden.append(name)
        else:
            by_name[name] = copy.deepcopy(rule)
            added.append(name)
        origins[name] = loc
    for name, severity in section.severity.items():
        if name not in by_name:
            raise RuleError([problem(["monitor", "severity", name], "unknown_rule", "names no rule")])
        by_name[name]["severity"] = severity
    disabled = [name for name, rule in by_name.items() if rule.get("enabled") is False]
    summary = {"added": added, "overridden": overridden, "disabled": disabled}
    return list(by_name.values()), [origins[name] for name in by_name], summary
