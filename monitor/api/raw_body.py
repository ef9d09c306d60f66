"""JSON bodies validated off the event loop, with the same OpenAPI schema and 422 answers.

FastAPI parses a declared body model on the event loop before the handler runs. For big
ingestion bodies that stalls every other request of the process (a decision poll waits
for the parse of someone else's 50,000 records), so those routes read the raw bytes and
call :func:`parse_body` in their worker thread. :func:`json_body` documents the body in
OpenAPI as if FastAPI had declared it, and :func:`add_body_schemas` puts the models into
the schema's components.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

_DOCUMENTED: list[type[BaseModel]] = []
REF = "#/components/schemas/{model}"


def is_json(content_type: str | None) -> bool:
    """FastAPI's rule: ``application/json`` or any ``application/*+json``, parameters ignored."""
    main, _, sub = (content_type or "").partition(";")[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def parse_body(model: type[M], body: bytes, content_type: str | None) -> M:
    """Validate a JSON body (NaN and Infinity tokens allowed); errors become FastAPI's 422."""
    if not is_json(content_type):
        raise RequestValidationError([{"type": "json_type", "loc": ("body",),
                                       "msg": "the body must be JSON, sent with Content-Type: application/json"}])
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in errors]) from None


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that parses ``model`` itself: a required JSON body."""
    _DOCUMENTED.append(model)
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_body_schemas(app: FastAPI) -> None:
    """Make the generated OpenAPI document hold the schemas :func:`json_body` refers to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for model in _DOCUMENTED:
            schema = model.model_json_schema(ref_template=REF)
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        return document

    app.openapi = openapi  # type: ignore[method-assign]
