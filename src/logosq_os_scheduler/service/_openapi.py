"""The OpenAPI 3.1 document of the API: schemas from msgspec, paths from one table."""

from __future__ import annotations

import functools
from typing import Any, get_args

import msgspec

from ._wire import BatchRequest, Priority, TaskRequest

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
        "field": {"type": "string", "description": "422: the task field to blame"},
        "index": {"type": "integer", "description": "422 of a batch: the refused entry"},
        "key": {"type": "string", "description": "KeyReusedError: the client key"},
        "task_id": {
            "type": "integer",
            "description": "KeyReusedError: the task the key already names",
        },
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

_INT = {"type": "integer"}
_BY_PRIORITY = {
    "type": "object",
    "description": "tasks waiting, by priority name",
    "properties": {name: _INT for name in get_args(Priority)},
    "required": list(get_args(Priority)),
    "additionalProperties": False,
}
_ENDS = {name: _INT for name in ("completed", "failed", "cancelled", "timed_out")}
_BACKEND = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "num_qubits": {"type": ["integer", "null"]},
        "capacity": _INT,
        "busy": _INT,
        "queued": _INT,
        "queued_by_priority": {"$ref": "#/components/schemas/CountsByPriority"},
        "breaker": {"enum": ["closed", "open", "half_open"]},
        "in_rotation": {"type": "boolean"},
    },
}
_STATS = {
    "type": "object",
    "properties": {
        "now": {"type": "number", "description": "the server's Unix time"},
        "queued_by_priority": {"$ref": "#/components/schemas/CountsByPriority"},
        "running": _INT,
        **_ENDS,
        "throughput_per_s": {"type": "number"},
        "users": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "user": {"type": "string"},
                    "running": _INT,
                    "queued": _INT,
                    **_ENDS,
                    "weight": {"type": ["number", "null"]},
                },
            },
        },
        "backends": {"type": "array", "items": {"$ref": "#/components/schemas/Backend"}},
        "long_polls": {**_INT, "description": "requests waiting now (admins only)"},
    },
}

_VIEW_REF = {"$ref": "#/components/schemas/TaskView"}
_OK = {200: "success"}

# (method, path, summary, request schema ref or None, success statuses with what each means,
# response schema)
_ROUTES: tuple[tuple[str, str, str, str | None, dict[int, str], dict[str, Any]], ...] = (
    (
        "post",
        "/v1/tasks",
        "Submit a task",
        "TaskRequest",
        {
            201: "a new task: its view",
            200: "the task this user's client key already names, sent again (the same "
            "request): its view, nothing new is made",
        },
        _VIEW_REF,
    ),
    (
        "post",
        "/v1/tasks/batch",
        "Submit a batch of tasks, all or none",
        "BatchRequest",
        {201: "the tasks' views, in order (a known key's entry: the task it names)"},
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
        _OK,
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
        _OK,
        {"$ref": "#/components/schemas/TaskView"},
    ),
    (
        "get",
        "/v1/tasks/key/{key}",
        "A task by client key (query: wait)",
        None,
        _OK,
        {"$ref": "#/components/schemas/TaskView"},
    ),
    (
        "post",
        "/v1/tasks/{task_id}/cancel",
        "Cancel a task",
        None,
        _OK,
        {"$ref": "#/components/schemas/TaskView"},
    ),
    ("get", "/v1/me", "The caller's account, quotas and usage", None, _OK, {"type": "object"}),
    (
        "get",
        "/v1/backends",
        "Backends with queues and breaker states",
        None,
        _OK,
        {"type": "array", "items": {"$ref": "#/components/schemas/Backend"}},
    ),
    (
        "get",
        "/v1/stats",
        "Queues, throughput and per-user work",
        None,
        _OK,
        {"$ref": "#/components/schemas/Stats"},
    ),
    ("get", "/v1/events", "Server-sent events: task and stats", None, _OK, {"type": "string"}),
    ("get", "/metrics", "Prometheus metrics (admin)", None, _OK, {"type": "string"}),
    ("get", "/healthz", "Liveness", None, _OK, {"type": "object"}),
)


_INVALID = (
    "refused: a malformed or invalid task (problem member field names it), or a client key "
    "this user already used for a different task (error KeyReusedError, problem members key "
    "and task_id: send the same task again to get it back, or use a new key)"
)
# Refusals documented for one operation besides the generic 4XX.
_REFUSALS: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/v1/tasks"): {"422": _INVALID},
    ("post", "/v1/tasks/batch"): {
        "422": _INVALID + "; in a batch the problem's index names the entry, and nothing of "
        "the batch was made (also: an empty batch, or more than max_batch tasks)"
    },
}


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
    components["CountsByPriority"] = _BY_PRIORITY
    components["Backend"] = _BACKEND
    components["Stats"] = _STATS
    paths: dict[str, dict[str, Any]] = {}
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for method, path, summary, body, statuses, schema in _ROUTES:
        responses: dict[str, Any] = {
            str(status): {
                "description": description,
                "content": {"application/json": {"schema": schema}},
            }
            for status, description in statuses.items()
        }
        for status_text, description in _REFUSALS.get((method, path), {}).items():
            responses[status_text] = {"description": description, "content": problem}
        responses["4XX"] = {"description": "refused", "content": problem}
        op: dict[str, Any] = {"summary": summary, "responses": responses}
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
