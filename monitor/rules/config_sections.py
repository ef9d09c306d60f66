"""The run config's sections and the per-process cache of compiled rule sets.

Why here: a run config is the trainer's own YAML, so a section the rules read from
(``training``, ``model``, ``monitor`` ...) that is not a mapping is refused at the PUT with a
located 422 instead of being read as "absent" (which silently defaulted every threshold);
and compiling a config costs far more than ingesting a small batch, so compiled rule sets
are kept by the config's SHA-256 (a digest names one config forever: never stale).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.rules.ruleset import RuleSet

# Sections the shipped rules read thresholds from (the real RLAN layout and the seed's).
SECTIONS: tuple[str, ...] = (
    "model", "training", "monitoring", "hyper_lora", "recursive_solver", "meta_escalation", "gates", "monitor",
)


@dataclass(frozen=True)
class ConfigProblem:
    """One unusable value: its key path inside the config, a message that repeats no value, a type."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"


class ConfigError(ValueError):
    """The config cannot be stored; ``problems`` lets the API answer one 422 item each."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        lines = [f"{'.'.join(str(part) for part in item.loc) or 'config'}: {item.msg}" for item in problems]
        super().__init__("invalid config: " + "; ".join(lines))


def check_sections(config: dict[str, Any]) -> None:
    """Every section the rules read from is a mapping (or absent, or null); ConfigError otherwise."""
    problems = [ConfigProblem((name,), "must be a mapping (a JSON object) or null", "dict_type")
                for name in SECTIONS if config.get(name) is not None and not isinstance(config[name], dict)]
    if problems:
        raise ConfigError(problems)


def readable_sections(config: dict[str, Any] | None) -> dict[str, Any]:
    """A config stored before sections were checked (migration 0005), with a non-mapping
    section read as absent, as it was then, so its ingestion keeps working."""
    if not isinstance(config, dict):
        return {}
    return {key: value for key, value in config.items()
            if key not in SECTIONS or value is None or isinstance(value, dict)}


class RuleSetCache:
    """Compiled rule sets by config SHA-256, least recently used dropped first."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[str, RuleSet] = OrderedDict()
        self._lock = threading.Lock()  # ingest threads and request threads share it

    @staticmethod
    def build(config: dict[str, Any] | None) -> RuleSet:
        """The rule set of a stored config (see :func:`readable_sections`)."""
        return RuleSet.from_run_config(readable_sections(config))

    def get(self, sha256: str, config: Callable[[], dict[str, Any] | None]) -> RuleSet:
        """The rule set of the config with SHA-256 ``sha256``; ``config()`` is called only on a miss."""
        with self._lock:
            found = self._items.get(sha256)
            if found is not None:
                self._items.move_to_end(sha256)
                return found
        found = self.build(config())  # outside the lock: it may load the config column
        with self._lock:
            self._items[sha256] = found
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return found
