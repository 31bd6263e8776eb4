"""The API's OpenAPI 3 document, written out by hand (seven routes do not need a schema
generator); tests/test_api.py checks that it lists every route and method of urls.py."""

from __future__ import annotations

from typing import Any

from ..models import Action, Status

_ERROR_STATUSES = {
    "400": "The body is not JSON (MalformedJSON)",
    "401": "No token, or not a valid one (NotAuthenticated)",
    "403": "The token's user lacks the role (PermissionDenied)",
    "404": "No such workflow, instance or route (WorkflowNotFound, InstanceNotFound, NotFound)",
    "405": "Not a method of this route (MethodNotAllowed)",
    "409": "The id is taken, or the status forbids the call (InstanceExists, InvalidState)",
    "411": "A body sent without Content-Length (LengthRequired)",
    "413": "The body or a value is over DURABLE_MAX_PAYLOAD_BYTES (PayloadTooLarge)",
    "422": "Bad params, id, event type, option, filter or cursor (PayloadError, ValueError, InvalidRequest)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/{code}"} for code in ("401", "405", *codes)}


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_INSTANCE_ID = {"name": "instance_id", "in": "path", "required": True, "schema": {"type": "string"}}
_ANY = {"description": "Any JSON value"}
_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_SUMMARY = {
    "id": {"type": "string"},
    "workflow": {"type": "string"},
    "status": {"type": "string", "enum": Status.values},
    "created_at": _TIMESTAMP,
    "updated_at": _TIMESTAMP,
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "InstanceSummary": {"type": "object", "properties": _SUMMARY},
    "Step": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "status": {"type": "string"},
            "attempts": {"type": "integer"},
            "result": _ANY,
            "error": {"type": ["object", "null"]},
            "started_at": _TIMESTAMP,
            "completed_at": _NULLABLE_TIMESTAMP,
        },
    },
    "Instance": {
        "type": "object",
        "properties": {
            **_SUMMARY,
            "params": _ANY,
            "output": _ANY,
            "error": {
                "type": ["object", "null"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
            "parent_id": {"type": ["string", "null"]},
            "finished_at": _NULLABLE_TIMESTAMP,
            "steps": {"type": "array", "items": _ref("Step")},
        },
    },
    "NewInstance": {
        "type": "object",
        "properties": {"params": _ANY, "id": {"type": "string", "description": "default: generated"}},
        "additionalProperties": False,
    },
}

_PATHS: dict[str, Any] = {
    "/workflows": {
        "get": {
            "summary": "Every registered workflow with its instance counts by status",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "workflows": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string"},
                                        "counts": {
                                            "type": "object",
                                            "additionalProperties": {"type": "integer"},
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "The workflows",
                ),
                **_errors("403"),
            },
        }
    },
    "/workflows/{name}/instances": {
        "post": {
            "summary": "Create an instance, or a batch of them (all or none)",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": _body(
                {
                    "oneOf": [
                        _ref("NewInstance"),
                        {
                            "type": "object",
                            "required": ["instances"],
                            "properties": {
                                "instances": {"type": "array", "minItems": 1, "items": _ref("NewInstance")}
                            },
                            "additionalProperties": False,
                        },
                    ]
                },
                required=False,
            ),
            "responses": {
                "201": _json(
                    {
                        "oneOf": [
                            {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "workflow": {"type": "string"},
                                    "status": {"type": "string"},
                                },
                            },
                            {
                                "type": "object",
                                "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
                            },
                        ]
                    },
                    "Created and queued: the instance, or the batch's ids in order",
                ),
                **_errors("400", "403", "404", "409", "411", "413", "422"),
            },
        }
    },
    "/instances": {
        "get": {
            "summary": "Instances, newest first, a page at a time",
            "parameters": [
                {"name": "workflow", "in": "query", "schema": {"type": "string"}},
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": Status.values}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {
                    "name": "cursor",
                    "in": "query",
                    "description": 'The "next" of the previous page',
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "instances": {"type": "array", "items": _ref("InstanceSummary")},
                            "next": {"type": ["string", "null"]},
                        },
                    },
                    "A page; next is null on the last one",
                ),
                **_errors("403", "422"),
            },
        }
    },
    "/instances/{instance_id}": {
        "get": {
            "summary": "One instance with its steps",
            "parameters": [_INSTANCE_ID],
            "responses": {"200": _json(_ref("Instance"), "The instance"), **_errors("403", "404")},
        }
    },
    "/instances/{instance_id}/events": {
        "post": {
            "summary": "Send an event to the instance",
            "parameters": [_INSTANCE_ID],
            "requestBody": _body(
                {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"type": "string"}, "payload": _ANY},
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "202": _json(
                    {"type": "object", "properties": {"id": {"type": "integer"}}}, "The event, stored"
                ),
                **_errors("400", "403", "404", "409", "411", "413", "422"),
            },
        }
    },
    "/instances/{instance_id}/{action}": {
        "post": {
            "summary": "Pause, resume, terminate, restart or retry the instance",
            "description": 'terminate takes {"rollback": true}; restart takes {"from_step": NAME}',
            "parameters": [
                _INSTANCE_ID,
                {"name": "action", "in": "path", "required": True, "schema": {"enum": Action.values}},
            ],
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {"rollback": {"type": "boolean"}, "from_step": {"type": "string"}},
                    "additionalProperties": False,
                },
                required=False,
            ),
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
                    },
                    "The instance's status after the action",
                ),
                **_errors("400", "403", "404", "409", "411", "413", "422"),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "An OpenAPI 3 document"}},
        }
    },
}


def openapi_document(*, base_path: str = "/api/v1") -> dict[str, Any]:
    """The document, its paths relative to `base_path` (where the API is mounted)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Durable HTTP API",
            "version": "1",
            "description": "Create and drive workflow instances. Authenticate with "
            "`Authorization: Bearer <token>` (python manage.py workflows token create USERNAME): "
            "Viewers may read, Operators may also act. Errors are "
            '{"error": {"type": ..., "message": ...}}.',
        },
        "servers": [{"url": base_path}],
        "security": [{"bearer": []}],
        "paths": _PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
            "responses": {
                code: _json(_ref("Error"), description) for code, description in _ERROR_STATUSES.items()
            },
        },
    }
