"""What changed between two run configs, bounded so one event row stays small.

Why: a second PUT replaced the whole config without a trace (demoting
``attention_collapse`` turned a pause into continue and nobody could see why). The diff
names each changed key path with its old and new value; lists count as one value. It
keeps at most ``max_changes`` entries and leaves out values larger than
``max_value_bytes`` (saying how large they were), so a hostile PUT cannot grow the history.
"""

from __future__ import annotations

from typing import Any

from monitor.schemas.config_tree import canonical_json

MAX_CHANGES = 50
MAX_VALUE_BYTES = 512
_MISSING = object()


def config_diff(old: dict[str, Any], new: dict[str, Any], *, max_changes: int = MAX_CHANGES,
                max_value_bytes: int = MAX_VALUE_BYTES) -> dict[str, Any]:
    """``{"changes": [...], "changed_count": n, "truncated": bool}`` from ``old`` to ``new``."""
    found: list[tuple[list[str], Any, Any]] = []
    _walk([], old, new, found)
    changes = [_entry(path, before, after, max_value_bytes) for path, before, after in found[:max_changes]]
    return {"changes": changes, "changed_count": len(found), "truncated": len(found) > max_changes}


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (``1``, ``1.0`` and ``true`` are different config values)."""
    return type(a) is type(b) and a == b


def _walk(path: list[str], old: Any, new: Any, found: list[tuple[list[str], Any, Any]]) -> None:
    """Collect (path, old, new) for every differing leaf; mappings are compared key by key."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        if not _same(old, new):
            found.append((path, old, new))
        return
    for key in [*old, *(key for key in new if key not in old)]:
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before is _MISSING or after is _MISSING:
            found.append(([*path, key], before, after))
        elif not _same(before, after):
            _walk([*path, key], before, after, found)


def _entry(path: list[str], before: Any, after: Any, max_value_bytes: int) -> dict[str, Any]:
    """One change: ``change`` is added/removed/changed; a side that is too large gives its size instead."""
    change = "added" if before is _MISSING else "removed" if after is _MISSING else "changed"
    entry: dict[str, Any] = {"path": path, "change": change}
    for side, value in (("old", before), ("new", after)):
        if value is _MISSING:
            continue
        size = len(canonical_json(value).encode("utf-8"))
        if size > max_value_bytes:
            entry[f"{side}_bytes"] = size
        else:
            entry[side] = value
    return entry
