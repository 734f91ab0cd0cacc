"""The OpenAPI 3.1 document of the public API, written by hand (a test keeps it in step with
the routes the app registers: every route is documented, every documented path is served)."""

from __future__ import annotations

import functools
from typing import Any

from jobvisor import __version__
from jobvisor.limits import MAX_EVENT_ID, MAX_PAGE

from api_gateway.openapi_orchestrator import orchestrator_paths, orchestrator_schemas
from api_gateway.openapi_users import users_paths, users_schemas
from api_gateway.openapi_schemas import ref, schemas
from api_gateway.validation import DEFAULT_PAGE, FLAGS, MAX_OFFSET

PREFIX = "/api/v1"


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": ref("Problem")}}}


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


def _sse(event: str) -> dict:
    return {"text/event-stream": {"schema": ref(event)}}


def _op(summary: str, responses: dict, *, params: list | None = None, body: dict | None = None,
        public: bool = False, tag: str = "jobs", description: str = "") -> dict:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def _paths() -> dict:
    from api_gateway import openapi_workflows  # it uses this module's helpers

    job_or_list = {
        "oneOf": [ref("JobSubmission"), {"type": "array", "items": ref("JobSubmission"), "minItems": 1}]
    }
    jobs = {
        "post": _op(
            "Submit one job or a list of jobs (one op for the whole batch)",
            {
                "201": _json({"oneOf": [ref("Job"), {"type": "array", "items": ref("Job")}, ref("JobArray")]},
                             "The new job, the list of new jobs, or the new job array (a job with `array`)"),
                **_BAD,
                "413": _problem("Body over gateway.max_body_bytes, files over gateway.max_input_bytes, "
                                "or more jobs than gateway.max_batch"),
                **_ERRORS,
            },
            body={"required": True, "content": {
                "application/json": {"schema": job_or_list},
                "multipart/form-data": {"schema": ref("JobForm"), "encoding": {
                    "job": {"contentType": "application/json"}, "file": {"contentType": "application/octet-stream"}}},
            }},
        ),
        "get": _op(
            "List the caller's jobs (all jobs for admins), newest page first by id",
            {"200": _json(ref("JobPage"), "A page; the `Link` header (rel=next) points to the next"), **_BAD, **_ERRORS},
            params=[
                {"name": "state", "in": "query", "schema": {"type": "string"}, "description": "Comma-separated states"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "`next` of the previous page"},
                {"name": "name", "in": "query", "schema": {"type": "string"}, "description": "Only jobs of this name (exact)"},
                {"name": "id_prefix", "in": "query", "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{0,64}$"},
                 "description": "Only jobs whose id starts with this (a short id)"},
                {"name": "array", "in": "query", "schema": {"type": "string"}, "description": "Only the jobs of this job array"},
            ],
        ),
    }
    return {
        f"{PREFIX}/jobs": jobs,
        f"{PREFIX}/jobs/{{id}}": {
            "get": _op("A job, with queue position, reason, info and history", {"200": _json(ref("JobDetail"), "The job"), **_NOT_FOUND, **_ERRORS}, params=[_JOB_ID]),
        },
        f"{PREFIX}/jobs/{{id}}/cancel": {
            "post": _op(
                "Cancel a job",
                {"200": _json(ref("Job"), "The job after the cancel request"), **_NOT_FOUND, "409": _problem("The job already ended"), **_ERRORS},
                params=[_JOB_ID],
            ),
        },
        f"{PREFIX}/jobs/{{id}}/resubmit": {
            "post": _op(
                "A new job from this job's spec (code, params, resources, driver, retries, name), with params "
                "overridden by dotted keys ({\"params\": {\"args.size\": 10}}); it belongs to the caller. "
                "An array element becomes a lone job. It gets the same input files: uploaded ones (and files a "
                "workflow job fetched) are linked from the old job's, kept [supervisor] keep_inputs_days after it "
                "ended; a workflow job's files of the jobs it depended on are placed from their run dirs again. "
                "Once the old job's inputs were pruned, a 409 names them",
                {"201": _json(ref("Job"), "The new job"), **_BAD, **_NOT_FOUND,
                 "409": _problem("The job's uploaded inputs are no longer kept"), **_ERRORS},
                params=[_JOB_ID],
                body={"required": False, "content": {"application/json": {"schema": ref("Resubmit")}}},
            ),
        },
        f"{PREFIX}/jobs/{{id}}/log": {
            "get": _op(
                "The job's output log: plain text, or with follow=1 server-sent events "
                "(`event: log` {offset, next, text}; `event: end` {state, exit_code})",
                {
                    "200": {
                        "description": "Log text or event stream. `X-Log-Size`: the log's size in bytes (its final "
                                       "size once the job has ended)",
                        "content": {"text/plain": {"schema": {"type": "string"}}, **_sse("LogStreamEvent")},
                    },
                    **_BAD, **_NOT_FOUND, **_ERRORS,
                },
                params=[
                    _JOB_ID,
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
                     "description": "Byte offset to start from"},
                    {"name": "follow", "in": "query", "schema": {"type": "string", "enum": list(FLAGS)},
                     "description": "1 or true: stream as SSE until the job ends"},
                ],
                description=(
                    "A job's end is known (and published) within milliseconds of its process's exit; the last "
                    "of its output may still be on its way from its agent then, with its final size known. "
                    "Reading the log of an ended job therefore waits for the rest of it: each read of the "
                    "supervisor's log store waits up to 10 s for bytes that have not arrived yet, so the plain "
                    "text is the whole log, and the `end` event of a followed log comes after its last byte. "
                    "Only when the job's agent is gone for good before the log is complete (its host died) does "
                    "the text stop short, after at most that wait."
                ),
            ),
        },
        f"{PREFIX}/jobs/{{id}}/files": {
            "get": _op("Files of the job's run dir", {"200": _json(ref("FileList"), "Files"), **_NOT_FOUND, **_ERRORS}, params=[_JOB_ID]),
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
        **openapi_workflows.paths(PREFIX),
        f"{PREFIX}/clusters": {
            "get": _op("The Slurm clusters of the sbatch driver and the caller's login to each",
                       {"200": _json(ref("Clusters"), "Clusters"), **_ERRORS}, tag="clusters"),
        },
        f"{PREFIX}/clusters/{{name}}/login": {
            "delete": _op(
                "Log out of a cluster: the caller's SSH connection is closed. Running agents and Slurm jobs go on; "
                "starting a new agent needs a new login",
                {"200": _json(ref("ClusterLogin"), "Logged out"), "404": _problem("No such cluster"), **_ERRORS},
                params=[_CLUSTER_NAME], tag="clusters",
            ),
            "post": _op(
                "Log in to a Slurm cluster's login node (sbatch driver): password (+ one-time code) or the "
                "operator's key. The credentials are used for the SSH connect only, never stored; until a "
                "user has logged in, their sbatch jobs stay queued with the reason 'login required'",
                {
                    "200": _json(ref("ClusterLogin"), "Logged in"),
                    **_BAD,
                    "403": _problem("The login node refused the credentials (nothing was stored)"),
                    "404": _problem("No such cluster"),
                    **_ERRORS,
                },
                params=[_CLUSTER_NAME],
                body={"required": True, "content": {"application/json": {"schema": ref("ClusterLoginRequest")}}},
                tag="clusters",
            ),
        },
        f"{PREFIX}/queue": {
            "get": _op("Capacity per driver and the caller's queued jobs (all for admins)", {"200": _json(ref("Queue"), "The queue"), **_ERRORS}, tag="system"),
        },
        f"{PREFIX}/agents": {
            "get": _op("Agents (admins: all; users: their own)", {"200": _json(ref("Agents"), "Agents"), **_ERRORS}, tag="system"),
        },
        f"{PREFIX}/whoami": {
            "get": _op("Who the token belongs to, and whether they are an admin (who sees everyone's jobs)",
                       {"200": _json(ref("WhoAmI"), "The caller"), **_ERRORS}, tag="system"),
        },
        f"{PREFIX}/events": {
            "get": _op(
                "The caller's events (admins: everyone's), oldest first, each with its `id`: job transitions, "
                "progress, workflow changes, user and system events. As server-sent events (the default): "
                "`event:` is the kind, `id:` the event's id, `data:` an Event; a heartbeat comment every 15 s. "
                "Resuming with `Last-Event-ID` (EventSource sends it) or `?since=ID` first sends every event "
                "committed after that id, then the live ones, without a gap or a duplicate. A stream that must "
                "end (a client reading too slowly, a restart) ends with a `reconnect` event naming the last id "
                "sent: reconnect from it and nothing is lost. A stream resuming from an id whose successors "
                "were pruned already ([events] keep_days, keep_count) says so first with a `pruned` event. With `format=json`: one page of the events after "
                "`since` (for scripts; `next`: pass it as `since` for the next page, null when none is left). "
                "The token may be passed as ?access_token= (EventSource)",
                {
                    "200": {"description": "The event stream, or with format=json a page of events",
                            "content": {**_sse("EventStreamEvent"), "application/json": {"schema": ref("EventPage")}}},
                    **_BAD, **_ERRORS,
                },
                params=[
                    {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID},
                     "description": "Events after this id (0: from the oldest kept). A stream without it (nor Last-Event-ID) "
                                    "sends live events only, and starts with an `id:` line naming where it starts"},
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["sse", "json"], "default": "sse"},
                     "description": "sse: a live stream; json: one page of the history"},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                     "description": "Events in the page (format=json only)"},
                    {"name": "job", "in": "query", "schema": {"type": "string"}, "description": "Only this job's events"},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string", "pattern": "^[0-9]{0,18}$"},
                     "description": "The last event id the client saw (takes precedence over since; empty: none)"},
                    {"name": "access_token", "in": "query", "schema": {"type": "string"}, "description": "Bearer token, for clients that cannot set headers"},
                ],
                tag="events",
            ),
            "post": _op(
                "Push a user event (201: the event, committed, with its id), about one of the caller's jobs "
                "or workflows if named. Every stream of the caller (and admins') carries it",
                {"201": _json(ref("Event"), "The event"), **_BAD, **_ERRORS},
                body={"required": True, "content": {"application/json": {"schema": ref("UserEvent")}}},
                tag="events",
            ),
        },
        f"{PREFIX}/status": {
            "get": _op("Version, job counts, agents, uptime (no token needed)", {"200": _json(ref("Status"), "Status"), "503": _ERRORS["503"]}, public=True, tag="system"),
        },
        f"{PREFIX}/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1 document")}, public=True, tag="system"),
        },
        **orchestrator_paths(PREFIX, _op, _json, _problem, _ERRORS, _BAD),
        **users_paths(PREFIX, _op, _json, _problem, _ERRORS, _BAD),
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
            "schemas": {**schemas(), **orchestrator_schemas(), **users_schemas()},
        },
    }


def build_openapi() -> dict:
    return _document()
