"""Bounds on a run config: nesting depth, size, and integers every JSON client reads exactly.

Why: a config nested ~300 levels was stored, and then every answer that carried it failed
to serialise (pydantic stops at ~255 levels), so ``GET /api/v1/runs`` answered 500 for
everyone. A 7 MB config cost each ingest 64 ms. And an integer beyond 2^53-1 comes back
changed in JavaScript (``JSON.parse`` reads numbers as doubles). So these are refused at
input, naming the key path, and a config that passes is kept with its canonical text:
its size, its digest (the thresholds cache key) and the round-trip check all use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from monitor.rules.config_sections import ConfigError, ConfigProblem

MAX_EXACT_INT = 2**53 - 1  # Number.MAX_SAFE_INTEGER


@dataclass(frozen=True)
class CheckedConfig:
    """A config within bounds, with its canonical compact JSON (sorted keys) and that text's SHA-256."""

    tree: dict[str, Any]
    text: str
    sha256: str


def empty_config() -> CheckedConfig:
    """The config of a run created without one (hashed too, so its ingestion never reads it)."""
    return hashed_config({})


def canonical_json(tree: Any) -> str:
    """Compact JSON with sorted keys: the same config always gives the same text."""
    return json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_config(tree: dict[str, Any], *, max_depth: int, max_bytes: int) -> CheckedConfig:
    """``tree`` checked and canonicalised; ConfigError (locs inside the config) if out of bounds."""
    problem = tree_problem(tree, max_depth)
    if problem is not None:
        raise ConfigError([problem])
    checked = hashed_config(tree)
    size = len(checked.text.encode("utf-8"))
    if size > max_bytes:
        raise ConfigError([ConfigProblem((), f"config is {size} bytes as compact JSON; at most {max_bytes} "
                                         "are accepted (MONITOR_MAX_CONFIG_BYTES)", "too_long")])
    return checked


def hashed_config(tree: dict[str, Any]) -> CheckedConfig:
    """``tree`` with its canonical text and hash, unchecked (for configs from our own code)."""
    text = canonical_json(tree)
    return CheckedConfig(tree, text, hashlib.sha256(text.encode("utf-8")).hexdigest())


def tree_problem(tree: Any, max_depth: int) -> ConfigProblem | None:
    """The first container deeper than ``max_depth`` (the root is level 1) or inexact integer.

    Iterative, so a deep tree costs no stack, and it stops at the first problem.
    """
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), tree)]
    while pending:
        loc, node = pending.pop()
        if isinstance(node, (dict, list)):
            if len(loc) >= max_depth:
                return ConfigProblem(loc, f"nested deeper than {max_depth} levels (MONITOR_MAX_CONFIG_DEPTH)",
                                     "too_deep")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            pending.extend(((*loc, key), value) for key, value in reversed(list(items)))
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_EXACT_INT:
            return ConfigProblem(loc, "integer beyond +-(2^53-1): JSON clients would read it changed; "
                                 "send it as a string", "int_too_large")
    return None
