"""OpenAPI for JSON bodies that a route reads as raw bytes and validates off the event loop.

FastAPI parses a declared body model on the event loop before the handler runs. For big
ingestion bodies that stalls every other request of the process (a decision poll waits
for the parse of someone else's 50,000 records), so those routes read the raw bytes and
the ingest worker validates them (``monitor.ingest.body``), with the same 422 answers.
:func:`json_body` documents the body in OpenAPI as if FastAPI had declared it, and
:func:`add_body_schemas` puts the models into the schema's components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

_DOCUMENTED: list[type[BaseModel]] = []
REF = "#/components/schemas/{model}"


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
