"""The OpenAPI 3.1 document of the public API, written by hand (a test keeps it in step with
the routes the app registers: every route is documented, every documented path is served)."""

from __future__ import annotations

import functools
from typing import Any

from jobvisor import __version__
from jobvisor.states import JobState

PREFIX = "/api/v1"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": _problem("Missing, unknown, expired or revoked token"),
    "503": _problem("The supervisor is unreachable or has no capacity"),
    "504": _problem("The supervisor did not answer in time"),
}
_NOT_FOUND = {"404": _problem("No such job (or it belongs to another user)")}
_BAD = {"400": _problem("Malformed input; `field` names the culprit")}

_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Job id"}
_CLUSTER_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "Cluster name ([sbatch] cluster or an [sbatch.clusters.NAME] table)"}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}


def _op(summary: str, responses: dict, *, params: list | None = None, body: dict | None = None,
        public: bool = False, tag: str = "jobs") -> dict:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def _job_schema(states: list[str]) -> dict:
    """A job as the supervisor answers it (ComputeJob.to_dict): every key, always present.
    An end-to-end test compares a real job's keys with this list, so it cannot drift."""
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    properties: dict[str, dict] = {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": states},
        "code": {"type": "string"},
        "params": {"description": "As submitted"},
        "resources": {"type": "object", "description": "As parsed: memory in bytes, walltime in seconds"},
        "driver": {"type": "string", "description": "local, docker or sbatch"},
        "owner": {"type": "string"},
        "name": {"type": "string"},
        "exit_code": {"type": ["integer", "null"]},
        "result": {"description": "What the code returned (python) or wrote to .jobvisor/result.json; null if none"},
        "reason": {"type": "string", "description": "Why the job is in its state"},
        "queue_position": {"type": ["integer", "null"], "description": "1 = next to start; null unless queued"},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": nullable_time,
        "finished_at": nullable_time,
        "attempt": {"type": "integer", "minimum": 1},
        "max_retries": {"type": "integer", "minimum": 0},
        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "progress_message": {"type": "string"},
        "info": {"type": "object", "description": "Driver details of the run (pid, container, Slurm job id)"},
        "agent_id": {"type": ["string", "null"], "description": "The agent running the job's current attempt"},
    }
    return {"type": "object", "required": list(properties), "properties": properties}


def _job_detail_schema(states: list[str]) -> dict:
    """GET /jobs/{id}: a Job and its history (flat, not allOf, so its keys can be listed)."""
    job = _job_schema(states)
    history = {
        "type": "array",
        "description": "Every transition of every attempt, oldest first",
        "items": {
            "type": "object",
            "required": ["attempt", "state", "reason", "at"],
            "properties": {
                "attempt": {"type": "integer"},
                "state": {"type": "string", "enum": states},
                "reason": {"type": "string"},
                "at": {"type": "number", "description": "Unix time"},
            },
        },
    }
    return {
        "type": "object",
        "required": [*job["required"], "history"],
        "properties": {**job["properties"], "history": history},
    }


def _schemas() -> dict:
    states = [s.value for s in JobState]
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "field": {"type": "string", "description": "The input field at fault (JSON path-like)"},
            },
        },
        "Resources": {
            "type": "object",
            "properties": {
                "cpus": {"type": "integer", "minimum": 1, "default": 1},
                "memory": {"type": ["string", "integer"], "description": "'512M', '2G' or bytes"},
                "gpus": {"type": "integer", "minimum": 0, "default": 0},
                "walltime": {"type": ["string", "number"], "description": "'HH:MM:SS', 'D-HH:MM:SS' or seconds"},
                "nodes": {"type": "integer", "minimum": 1, "default": 1},
            },
            "additionalProperties": True,
        },
        "JobSubmission": {
            "type": "object",
            "required": ["code", "params"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "minLength": 1, "description": "shell, python, demo or a plugin"},
                "params": {"description": "Code-specific parameters (shell: {argv} or {script}, python: {entry, args}, "
                           "demo: {steps, dt, ...}), checked at submit for these built-in codes; a plugin's "
                           "are checked where it runs"},
                "resources": _ref("Resources"),
                "driver": {"type": "string", "description": "local, docker, sbatch; empty: the default"},
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0},
                "name": {"type": "string"},
            },
        },
        "Job": _job_schema(states),
        "JobDetail": _job_detail_schema(states),
        "JobPage": {
            "type": "object",
            "required": ["jobs", "next"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("Job")},
                "next": {"type": ["string", "null"], "description": "Pass as `after` for the next page"},
            },
        },
        "JobEvent": {
            "type": "object",
            "properties": {
                "job_id": {"type": "string"},
                "owner": {"type": "string"},
                "state": {"type": "string", "enum": states},
                "attempt": {"type": "integer"},
                "at": {"type": "number", "description": "Unix time"},
                "reason": {"type": "string"},
                "exit_code": {"type": ["integer", "null"]},
                "progress": {"type": ["number", "null"]},
                "message": {"type": "string"},
            },
        },
        "FileList": {
            "type": "object",
            "properties": {
                "files": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"path": {"type": "string"}, "size": {"type": "integer"}, "mtime": {"type": "number"}},
                    },
                }
            },
        },
        "Queue": {
            "type": "object",
            "properties": {
                "drivers": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {
                            "cpus_total": {"type": "integer"},
                            "cpus_used": {"type": "integer"},
                            "queued": {"type": "integer"},
                        },
                    },
                },
                "jobs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "owner": {"type": "string"},
                            "driver": {"type": "string"},
                            "cpus": {"type": "integer"},
                            "queue_position": {"type": "integer"},
                        },
                    },
                },
            },
        },
        "Agents": {
            "type": "object",
            "properties": {
                "agents": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            k: {} for k in ("id", "user", "kind", "state", "pid", "host", "jobs", "connected_at")
                        },
                    },
                }
            },
        },
        "ClusterLoginRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "username": {"type": "string", "description": "Cluster account (default with method 'key': [sbatch] key_user)"},
                "password": {"type": "string", "format": "password"},
                "otp": {"type": "string", "format": "password", "description": "One-time code, where the site asks for one"},
                "method": {"type": "string", "enum": ["password", "key"], "default": "password"},
            },
        },
        "ClusterLogin": {
            "type": "object",
            "properties": {
                "cluster": {"type": "string"},
                "logged_in": {"type": "boolean"},
                "username": {"type": ["string", "null"]},
                "method": {"type": ["string", "null"], "description": "password, key or service account"},
                "work_dir": {"type": ["string", "null"], "description": "The remote work dir (agent logs, run dirs)"},
            },
        },
        "Clusters": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "default": {"type": "boolean", "description": "Where sbatch jobs that name no cluster go"},
                    "login_host": {"type": "string"},
                    "login_port": {"type": "integer"},
                    "key_login": {"type": "boolean", "description": "The operator configured a key (method 'key')"},
                    "partition": {"type": ["string", "null"]},
                    "account": {"type": ["string", "null"]},
                    "qos": {"type": ["string", "null"]},
                    "max_queued_jobs": {"type": "integer"},
                    "logged_in": {"type": "boolean"},
                    "username": {"type": ["string", "null"]},
                    "method": {"type": ["string", "null"]},
                    "work_dir": {"type": ["string", "null"]},
                },
            },
        },
        "Status": {
            "type": "object",
            "properties": {
                "version": {"type": "string"},
                "protocol_version": {"type": "integer"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                "agents": {"type": "integer"},
                "uptime": {"type": "number"},
                "gateway": {"type": "object"},
            },
        },
    }


def _paths() -> dict:
    job_or_list = {
        "oneOf": [_ref("JobSubmission"), {"type": "array", "items": _ref("JobSubmission"), "minItems": 1}]
    }
    jobs = {
        "post": _op(
            "Submit one job or a list of jobs (one op for the whole batch)",
            {
                "201": _json({"oneOf": [_ref("Job"), {"type": "array", "items": _ref("Job")}]}, "The new job(s)"),
                **_BAD,
                "413": _problem("Body over gateway.max_body_bytes or more jobs than gateway.max_batch"),
                **_ERRORS,
            },
            body={"required": True, "content": {"application/json": {"schema": job_or_list}}},
        ),
        "get": _op(
            "List the caller's jobs (all jobs for admins), newest page first by id",
            {"200": _json(_ref("JobPage"), "A page; the `Link` header (rel=next) points to the next"), **_BAD, **_ERRORS},
            params=[
                {"name": "state", "in": "query", "schema": {"type": "string"}, "description": "Comma-separated states"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "`next` of the previous page"},
            ],
        ),
    }
    return {
        f"{PREFIX}/jobs": jobs,
        f"{PREFIX}/jobs/{{id}}": {
            "get": _op("A job, with queue position, reason, info and history", {"200": _json(_ref("JobDetail"), "The job"), **_NOT_FOUND, **_ERRORS}, params=[_JOB_ID]),
        },
        f"{PREFIX}/jobs/{{id}}/cancel": {
            "post": _op(
                "Cancel a job",
                {"200": _json(_ref("Job"), "The job after the cancel request"), **_NOT_FOUND, "409": _problem("The job already ended"), **_ERRORS},
                params=[_JOB_ID],
            ),
        },
        f"{PREFIX}/jobs/{{id}}/log": {
            "get": _op(
                "The job's output log: plain text, or with follow=1 server-sent events "
                "(`event: log` {offset, next, text}; `event: end` {state, exit_code})",
                {
                    "200": {
                        "description": "Log text or event stream",
                        "content": {"text/plain": {"schema": {"type": "string"}}, **_SSE},
                    },
                    **_BAD, **_NOT_FOUND, **_ERRORS,
                },
                params=[
                    _JOB_ID,
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}, "description": "Byte offset to start from"},
                    {"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}, "description": "1: stream as SSE until the job ends"},
                ],
            ),
        },
        f"{PREFIX}/jobs/{{id}}/files": {
            "get": _op("Files of the job's run dir", {"200": _json(_ref("FileList"), "Files"), **_NOT_FOUND, **_ERRORS}, params=[_JOB_ID]),
        },
        f"{PREFIX}/jobs/{{id}}/files/{{path}}": {
            "get": _op(
                "Download one file of the run dir (streamed; content type guessed from the name)",
                {
                    "200": {"description": "The file", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    **_BAD, **_NOT_FOUND, **_ERRORS,
                },
                params=[_JOB_ID, {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Path relative to the run dir"}],
            ),
        },
        f"{PREFIX}/jobs/{{id}}/analysis": {
            "post": _op(
                "Run the code's analysis on the job's run dir",
                {"200": _json({"type": "object", "properties": {"result": {}}}, "The analysis result"), **_BAD, **_NOT_FOUND, **_ERRORS},
                params=[_JOB_ID],
                body={"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
            ),
        },
        f"{PREFIX}/clusters": {
            "get": _op("The Slurm clusters of the sbatch driver and the caller's login to each",
                       {"200": _json(_ref("Clusters"), "Clusters"), **_ERRORS}, tag="clusters"),
        },
        f"{PREFIX}/clusters/{{name}}/login": {
            "delete": _op(
                "Log out of a cluster: the caller's SSH connection is closed. Running agents and Slurm jobs go on; "
                "starting a new agent needs a new login",
                {"200": _json(_ref("ClusterLogin"), "Logged out"), "404": _problem("No such cluster"), **_ERRORS},
                params=[_CLUSTER_NAME], tag="clusters",
            ),
            "post": _op(
                "Log in to a Slurm cluster's login node (sbatch driver): password (+ one-time code) or the "
                "operator's key. The credentials are used for the SSH connect only, never stored; until a "
                "user has logged in, their sbatch jobs stay queued with the reason 'login required'",
                {
                    "200": _json(_ref("ClusterLogin"), "Logged in"),
                    **_BAD,
                    "403": _problem("The login node refused the credentials (nothing was stored)"),
                    "404": _problem("No such cluster"),
                    **_ERRORS,
                },
                params=[_CLUSTER_NAME],
                body={"required": True, "content": {"application/json": {"schema": _ref("ClusterLoginRequest")}}},
                tag="clusters",
            ),
        },
        f"{PREFIX}/queue": {
            "get": _op("Capacity per driver and the caller's queued jobs (all for admins)", {"200": _json(_ref("Queue"), "The queue"), **_ERRORS}, tag="system"),
        },
        f"{PREFIX}/agents": {
            "get": _op("Agents (admins: all; users: their own)", {"200": _json(_ref("Agents"), "Agents"), **_ERRORS}, tag="system"),
        },
        f"{PREFIX}/events": {
            "get": _op(
                "Server-sent events of the caller's job transitions (`event: job`, data: JobEvent); "
                "a heartbeat comment every 15 s. The token may be passed as ?access_token= (EventSource)",
                {"200": {"description": "Event stream", "content": _SSE}, **_ERRORS},
                params=[
                    {"name": "job", "in": "query", "schema": {"type": "string"}, "description": "Only this job's events"},
                    {"name": "access_token", "in": "query", "schema": {"type": "string"}, "description": "Bearer token, for clients that cannot set headers"},
                ],
                tag="system",
            ),
        },
        f"{PREFIX}/status": {
            "get": _op("Version, job counts, agents, uptime (no token needed)", {"200": _json(_ref("Status"), "Status"), "503": _ERRORS["503"]}, public=True, tag="system"),
        },
        f"{PREFIX}/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1 document")}, public=True, tag="system"),
        },
        "/": {
            "get": _op("The browser GUI", {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}, public=True, tag="system"),
        },
    }


@functools.cache
def _document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobvisor API",
            "version": __version__,
            "description": "Run jobs locally, in Docker or on Slurm. Errors are application/problem+json.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A jv_... API token"}},
            "schemas": _schemas(),
        },
    }


def build_openapi() -> dict:
    return _document()
