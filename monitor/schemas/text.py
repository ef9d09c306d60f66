"""Input text and JSON trees every database can store and every response can carry.

PostgreSQL text cannot hold NUL, and a lone UTF-16 surrogate (``"\\ud800"`` in JSON) is
not encodable as UTF-8: stored, either breaks later reads for every caller. Strict JSON
(PostgreSQL's json type, browsers) has no NaN/Infinity. So these are refused at input
(422) rather than stored differently per database.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return "must not contain NUL characters" if found.group() == "\x00" else "must not contain lone UTF-16 surrogates"


def check_text(value: str) -> str:
    """``value`` unchanged; ValueError (without echoing it) if it cannot be stored."""
    problem = text_problem(value)
    if problem:
        raise ValueError(f"text {problem}")
    return value


StorableStr = Annotated[str, AfterValidator(check_text)]


def _escaped(value: str) -> str:
    """``value`` with NUL and surrogates spelled as escapes, so a message about it can be sent."""
    return _UNSTORABLE.sub(lambda found: repr(found.group())[1:-1], value)


def _key_path(path: str, key: Any) -> str:
    """``path.key`` for dict keys, ``path[3]`` for list items."""
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{_escaped(str(key))}"


def check_json_tree(tree: Any, root: str) -> Any:
    """``tree`` unchanged; ValueError naming the key path (e.g. ``config.a.b[2]``) of a non-finite
    number, or of a NUL or lone surrogate in a key or value. Iterative: depth costs no stack."""
    pending: list[tuple[str, Any]] = [(root, tree)]
    while pending:
        path, node = pending.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"{path}: NaN and Infinity are not allowed (JSON cannot carry them)")
        problem = text_problem(node) if isinstance(node, str) else None
        if problem:
            raise ValueError(f"{path}: text {problem}")
        if isinstance(node, dict):
            for key, value in node.items():
                child = _key_path(path, key)
                problem = text_problem(key) if isinstance(key, str) else None
                if problem:
                    raise ValueError(f"{child}: key {problem}")
                pending.append((child, value))
        elif isinstance(node, list):
            pending.extend((_key_path(path, index), value) for index, value in enumerate(node))
    return tree
