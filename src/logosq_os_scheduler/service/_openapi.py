"""The OpenAPI 3.1 document of the API: schemas from msgspec, paths from one table."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from ._wire import BatchRequest, TaskRequest

__all__ = ["openapi_document"]

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "error": {"type": "string", "description": "the SchedulerError class name"},
        "limit": {"type": "string", "description": "429: the quota's name"},
    },
    "required": ["type", "title", "status", "detail"],
}
_VIEW = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "key": {"type": ["string", "null"]},
        "name": {"type": "string"},
        "user": {"type": ["string", "null"]},
        "kind": {"type": "string"},
        "priority": {"enum": ["critical", "high", "normal", "low", "idle"]},
        "status": {
            "enum": [
                "pending",
                "queued",
                "running",
                "preempted",
                "completed",
                "failed",
                "cancelled",
                "timed_out",
            ]
        },
        "submitted_at": {"type": ["number", "null"]},
        "started_at": {"type": ["number", "null"]},
        "finished_at": {"type": ["number", "null"]},
        "backend": {"type": ["string", "null"]},
        "recovery": {"type": ["string", "null"]},
        "result": {},
        "error": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                },
            ]
        },
    },
}

# (method, path, summary, request schema ref or None, success status, response schema)
_ROUTES: tuple[tuple[str, str, str, str | None, int, dict[str, Any]], ...] = (
    (
        "post",
        "/v1/tasks",
        "Submit a task",
        "TaskRequest",
        201,
        {"$ref": "#/components/schemas/TaskView"},
    ),
    (
        "post",
        "/v1/tasks/batch",
        "Submit a batch of tasks, all or none",
        "BatchRequest",
        201,
        {
            "type": "object",
            "properties": {
                "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskView"}}
            },
        },
    ),
    (
        "get",
        "/v1/tasks",
        "List tasks, newest first (query: status, user, priority, limit, cursor)",
        None,
        200,
        {
            "type": "object",
            "properties": {
                "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskView"}},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
    ),
    (
        "get",
        "/v1/tasks/{task_id}",
        "A task by id (query: wait)",
        None,
        200,
        {"$ref": "#/components/schemas/TaskView"},
    ),
    (
        "get",
        "/v1/tasks/key/{key}",
        "A task by client key (query: wait)",
        None,
        200,
        {"$ref": "#/components/schemas/TaskView"},
    ),
    (
        "post",
        "/v1/tasks/{task_id}/cancel",
        "Cancel a task",
        None,
        200,
        {"$ref": "#/components/schemas/TaskView"},
    ),
    ("get", "/v1/me", "The caller's account, quotas and usage", None, 200, {"type": "object"}),
    (
        "get",
        "/v1/backends",
        "Backends with queues and breaker states",
        None,
        200,
        {"type": "array"},
    ),
    ("get", "/v1/stats", "Queues, throughput and per-user work", None, 200, {"type": "object"}),
    ("get", "/v1/events", "Server-sent events: task and stats", None, 200, {"type": "string"}),
    ("get", "/metrics", "Prometheus metrics (admin)", None, 200, {"type": "string"}),
    ("get", "/healthz", "Liveness", None, 200, {"type": "object"}),
)


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document (built once)."""
    (task, batch), components = msgspec.json.schema_components(
        [TaskRequest, BatchRequest], ref_template="#/components/schemas/{name}"
    )
    components["TaskRequest"] = task
    components["BatchRequest"] = batch
    components["TaskView"] = _VIEW
    components["Problem"] = _PROBLEM
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, schema in _ROUTES:
        op: dict[str, Any] = {
            "summary": summary,
            "responses": {
                str(status): {
                    "description": "success",
                    "content": {"application/json": {"schema": schema}},
                },
                "4XX": {
                    "description": "refused",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                },
            },
        }
        if path not in ("/healthz",):
            op["security"] = [{"bearer": []}]
        if body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}
                },
            }
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer" if p == "task_id" else "string"},
                }
                for p in params
            ]
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "logosq serve", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
