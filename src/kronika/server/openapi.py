"""The OpenAPI 3.1 document, built from the route table and the body models.

Built rather than written by hand, so it cannot drift from the routes: every
:class:`~kronika.server.routing.Endpoint` becomes an operation with its path and query
parameters, its body's JSON Schema (from the pydantic model), its success answer and the
problem+json error answers, and the bearer-token security requirement unless it is public.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

import kronika
from kronika.server.routing import Access, Endpoint

__all__ = ["openapi_document"]

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_ERRORS = {
    "401": "No valid credentials.",
    "403": "The credentials do not allow this.",
    "404": "Not found.",
    "409": "Conflict (wrong expected version, append condition).",
    "410": "The stream is deleted (tombstoned).",
    "413": "The body is too large.",
    "422": "Invalid input, with field errors.",
    "429": "Rate limited or overloaded; see Retry-After.",
    "503": "Unavailable; see Retry-After.",
}


def _schema_of(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(endpoint: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", endpoint.path)
    ]
    parameters += [
        {
            "name": p.name,
            "in": "query",
            "required": False,
            "schema": p.schema,
            "description": p.description,
        }
        for p in endpoint.query
    ]
    if endpoint.response == "text/event-stream":
        parameters.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "description": "Resume after this id (wins over the query).",
            }
        )
    success: dict[str, Any] = {"description": endpoint.summary}
    if endpoint.status != 204:
        success["content"] = {endpoint.response: {"schema": {}}}
    responses: dict[str, Any] = {str(endpoint.status): success}
    errors = dict(_ERRORS)
    if endpoint.public:
        errors = {code: text for code, text in errors.items() if code in {"503"}}
    for code, text in errors.items():
        responses[code] = {
            "description": text,
            "content": {"application/problem+json": {"schema": _PROBLEM}},
        }
    operation: dict[str, Any] = {
        "operationId": f"{endpoint.method.lower()}_{_slug(endpoint.path)}",
        "summary": endpoint.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema_of(endpoint.body, components)}},
        }
    if endpoint.permission is not None:
        operation["security"] = [{"bearer": []}]
        scope = (
            " (checked against the stream's category)" if endpoint.access is Access.STREAM else ""
        )
        operation["description"] = f"Needs the `{endpoint.permission.value}` permission{scope}."
    else:
        operation["security"] = []
    return operation


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")


def openapi_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``endpoints``."""
    components: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(
            endpoint, components
        )
    paths["/openapi.json"] = {
        "get": {
            "operationId": "get_openapi_json",
            "summary": "This document.",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kronika HTTP API", "version": kronika.__version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
