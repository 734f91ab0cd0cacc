"""The OpenAPI paths and schemas of the orchestrator routes (`api_gateway.routes_orchestrator`):
the queue's clear, agents' cancel and shutdown, the admins' routes, timers."""

from __future__ import annotations

from typing import Any, Callable

from api_gateway.openapi_schemas import ref

_TIME = {"type": ["string", "null"], "format": "date-time"}


def orchestrator_schemas() -> dict:
    canceled = {"type": "integer", "minimum": 0, "description": "Jobs this request canceled"}
    return {
        "QueueCleared": {
            "type": "object",
            "required": ["canceled"],
            "properties": {
                "canceled": canceled,
                "user": {"type": "string", "description": "Whose queue was cleared"},
                "all_users": {"type": "boolean", "description": "An admin cleared every user's queue"},
            },
        },
        "AgentAction": {
            "type": "object",
            "required": ["agent", "canceled"],
            "properties": {
                "agent": {"$ref": "#/components/schemas/Agents/properties/agents/items"},
                "canceled": canceled,
            },
        },
        "Canceled": {"type": "object", "required": ["canceled"], "properties": {"canceled": canceled}},
        "ShuttingDown": {"type": "object", "required": ["shutting_down"], "properties": {"shutting_down": {"const": True}}},
        "TimerRequest": {
            "type": "object",
            "required": ["workflow_id"],
            "additionalProperties": False,
            "description": "Exactly one of at, every and cron",
            "properties": {
                "workflow_id": {"type": "string", "minLength": 1},
                "at": {"type": "string", "description": "ISO 8601 time (no zone: UTC); fires once"},
                "every": {"type": ["string", "number"], "description": "Seconds, or units d h m s: '1h30m'; at least 1 s"},
                "cron": {"type": "string", "description": "5 fields, UTC: minute hour day-of-month month day-of-week; or @hourly, @daily..."},
            },
        },
        "Timer": {
            "type": "object",
            "required": ["id", "owner", "workflow_id", "kind", "at", "every", "cron", "next_at", "last_at",
                         "last_outcome", "last_reason", "fired", "skipped", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "owner": {"type": "string"},
                "workflow_id": {"type": "string"},
                "kind": {"type": "string", "enum": ["at", "every", "cron"]},
                "at": _TIME,
                "every": {"type": ["number", "null"], "description": "Seconds"},
                "cron": {"type": ["string", "null"]},
                "next_at": {**_TIME, "description": "null: nothing left to fire"},
                "last_at": _TIME,
                "last_outcome": {"type": ["string", "null"], "enum": ["executed", "skipped", "failed", None]},
                "last_reason": {"type": "string"},
                "fired": {"type": "integer"},
                "skipped": {"type": "integer"},
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "Timers": {"type": "object", "required": ["timers"], "properties": {"timers": {"type": "array", "items": ref("Timer")}}},
        "TimerDeleted": {
            "type": "object",
            "required": ["id", "deleted"],
            "properties": {"id": {"type": "string"}, "deleted": {"const": True}},
        },
    }


def orchestrator_paths(prefix: str, op: Callable[..., dict], json: Callable[[dict, str], dict],
                       problem: Callable[[str], dict], errors: dict[str, Any], bad: dict[str, Any]) -> dict:
    """The paths, made with the document's own helpers (`api_gateway.openapi`)."""
    forbidden = {"403": problem("Admins only")}
    agent_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Agent id"}
    no_agent = {"404": problem("No such agent (or it belongs to another user)")}
    return {
        f"{prefix}/queue/clear": {
            "post": op(
                "Cancel the caller's queued and waiting jobs (admins: everyone's, or one user's with ?user=)",
                {"200": json(ref("QueueCleared"), "How many jobs were canceled"), **bad,
                 "403": problem("?user= names another user and the caller is not an admin"), **errors},
                params=[{"name": "user", "in": "query", "schema": {"type": "string", "minLength": 1},
                         "description": "Admins: clear this user's queue only"}],
                tag="system",
            ),
        },
        f"{prefix}/agents/{{id}}/cancel": {
            "post": op("Cancel every job of an agent (its owner or an admin)",
                       {"200": json(ref("AgentAction"), "The agent and how many jobs were canceled"), **no_agent, **errors},
                       params=[agent_id], tag="system"),
        },
        f"{prefix}/agents/{{id}}/shutdown": {
            "post": op("Cancel an agent's jobs and stop it through its driver; a new one starts when needed",
                       {"200": json(ref("AgentAction"), "The agent (stopping) and how many jobs were canceled"),
                        **no_agent, **errors},
                       params=[agent_id], tag="system"),
        },
        f"{prefix}/admin/cancel_all": {
            "post": op("Admins: cancel every unfinished job of every user",
                       {"200": json(ref("Canceled"), "How many jobs were canceled"), **forbidden, **errors}, tag="admin"),
        },
        f"{prefix}/admin/shutdown": {
            "post": op("Admins: stop the server as SIGTERM does (jobs are canceled, everything committed), after answering",
                       {"202": json(ref("ShuttingDown"), "The server stops now"), **forbidden, **errors}, tag="admin"),
        },
        f"{prefix}/timers": {
            "post": op(
                "Execute a workflow at a time, every interval, or on a cron expression (UTC). Firings missed "
                "while the server was down are caught up with one firing at start",
                {"201": json(ref("Timer"), "The new timer"), **bad,
                 "404": problem("No such workflow (or it belongs to another user)"), **errors},
                body={"required": True, "content": {"application/json": {"schema": ref("TimerRequest")}}},
                tag="timers",
            ),
            "get": op("The caller's timers (admins: all)", {"200": json(ref("Timers"), "Timers"), **errors}, tag="timers"),
        },
        f"{prefix}/timers/{{id}}": {
            "delete": op("Delete a timer",
                         {"200": json(ref("TimerDeleted"), "Deleted"),
                          "404": problem("No such timer (or it belongs to another user)"), **errors},
                         params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
                                  "description": "Timer id"}],
                         tag="timers"),
        },
    }
