"""Validate an ingestion body where the work runs (a worker process or thread), not on the event loop."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from monitor.ingest.failures import InvalidBody

M = TypeVar("M", bound=BaseModel)


def is_json(content_type: str | None) -> bool:
    """FastAPI's rule: ``application/json`` or any ``application/*+json``, parameters ignored."""
    main, _, sub = (content_type or "").partition(";")[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def parse_body(model: type[M], body: bytes, content_type: str | None) -> M:
    """Validate a JSON body (NaN and Infinity tokens allowed); errors are located as FastAPI's are."""
    if not is_json(content_type):
        raise InvalidBody([{"type": "json_type", "loc": ("body",),
                            "msg": "the body must be JSON, sent with Content-Type: application/json"}])
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise InvalidBody([{**error, "loc": ("body", *error["loc"])} for error in errors]) from None
