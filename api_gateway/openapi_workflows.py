"""The workflow routes' part of the OpenAPI document: their paths (`paths()`, merged into
`api_gateway.openapi`) and the shapes they take and answer (`schemas()`, merged into the
components). The supervisor's replies (`supervisor.workflow_views`, `workflow_commands`) have
exactly these keys."""

from __future__ import annotations

from jobvisor.limits import MAX_PAGE
from jobvisor.states import JobState, WorkflowState
from jobvisor.workflow_doc import MAX_NAME

from api_gateway.openapi_schemas import ref
from api_gateway.routes_workflows import MAX_MESSAGE_CHARS
from api_gateway.validation import FLAGS

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_WORKFLOW_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Workflow id"}
YAML_TYPES = ("application/yaml", "text/yaml")
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]*$"  # jobvisor.workflow_doc's names (no dots: $ref paths are dotted)


def paths(prefix: str) -> dict:
    from api_gateway.openapi import _BAD, _ERRORS, _json, _op, _problem  # the helpers of the whole document

    not_found = {"404": _problem("No such workflow (or it belongs to another user)")}
    running = {"409": _problem("The workflow is running")}

    def one(summary: str, ok: dict, *more: dict, params: list | None = None) -> dict:
        responses = {"200": ok, **_BAD}  # a 400 at least for a query parameter the route does not take
        for extra in more:
            responses.update(extra)
        return _op(summary, {**responses, **not_found, **_ERRORS}, params=[_WORKFLOW_ID, *(params or [])], tag="workflows")

    document = {"required": True, "content": {
        "application/json": {"schema": ref("WorkflowDocument")},
        **{t: {"schema": ref("WorkflowDocument")} for t in YAML_TYPES},
    }}
    flag = {"type": "string", "enum": list(FLAGS)}
    return {
        f"{prefix}/workflows": {
            "post": _op(
                "Publish a workflow document (JSON, or YAML as application/yaml): a new name makes a workflow "
                "(version 1), a name the caller already has publishes its next version",
                {
                    "201": _json(ref("Workflow"), "The workflow; `Location` names it"),
                    **_BAD, **running,
                    "413": _problem("Body over gateway.max_body_bytes"),
                    **_ERRORS,
                },
                params=[
                    {"name": "execute", "in": "query", "schema": flag, "description": "1 or true: start a run at once"},
                    {"name": "message", "in": "query", "schema": {"type": "string", "maxLength": MAX_MESSAGE_CHARS},
                     "description": "What this version changes (kept in its history)"},
                ],
                body=document, tag="workflows",
            ),
            "get": _op(
                "List the caller's workflows (all for admins), newest first",
                {"200": _json(ref("WorkflowPage"), "A page; the `Link` header (rel=next) points to the next"), **_BAD, **_ERRORS},
                params=[
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100}},
                    {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "`next` of the previous page"},
                ],
                tag="workflows",
            ),
        },
        f"{prefix}/workflows/{{id}}": {
            "get": one("A workflow: its current document, state, and its jobs in the current run",
                       _json(ref("WorkflowDetail"), "The workflow")),
            "delete": one("Delete a workflow and its versions (its jobs stay, as jobs); 409 while it runs unless ?force=true, "
                          "which cancels the run first", _json(ref("WorkflowDeleted"), "Deleted"), running,
                          params=[{"name": "force", "in": "query", "schema": flag, "description": "1 or true: cancel a run first"}]),
        },
        f"{prefix}/workflows/{{id}}/execute": {
            "post": one("Start a new run of the workflow's current version", _json(ref("Workflow"), "The workflow, running"), running),
        },
        f"{prefix}/workflows/{{id}}/cancel": {
            "post": one("Cancel the running run: every unfinished job is canceled", _json(ref("Workflow"), "The workflow")),
        },
        f"{prefix}/workflows/{{id}}/status": {
            "get": one("Counts by job state, each job's state, started and finished times", _json(ref("WorkflowStatus"), "Status")),
        },
        f"{prefix}/workflows/{{id}}/history": {
            "get": one("The versions published so far, oldest first", _json(ref("WorkflowHistory"), "Versions")),
        },
    }


def schemas(job_submission: dict) -> dict:
    """`job_submission`: POST /jobs' job schema, which a workflow's job extends."""
    job_states = [s.value for s in JobState]
    workflow_states = [s.value for s in WorkflowState]
    counts = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
              "description": "Jobs of the current run by state"}
    view_properties: dict[str, dict] = {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "version": {"type": "integer", "minimum": 1, "description": "The current (latest published) version"},
        "state": {"type": "string", "enum": workflow_states},
        "on_failure": {"type": "string", "enum": ["cancel_dependents", "continue"]},
        "run": {"type": "integer", "minimum": 0, "description": "Runs so far (0: never executed)"},
        "reason": {"type": "string", "description": "Why the workflow is in its state"},
        "counts": counts,
        "created_at": _TIME,
        "updated_at": _TIME,
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "owner": {"type": "string"},
        "jobs_total": {"type": "integer", "minimum": 1},
    }
    job_state = {"type": ["string", "null"], "enum": [*job_states, None], "description": "null: not run yet"}
    detail_job_properties = {
        "name": {"type": "string"},
        "job_id": {"type": ["string", "null"], "description": "null: not run yet"},
        "state": job_state,
        "reason": {"type": "string"},
        "exit_code": {"type": ["integer", "null"]},
        "progress": {"type": ["number", "null"]},
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
    }
    status_job_properties = {k: detail_job_properties[k] for k in ("name", "job_id", "state")}
    names = {"type": "array", "items": {"type": "string", "pattern": NAME_PATTERN}}
    paths = {"type": "array", "items": {"type": "string", "minLength": 1}}
    workflow_job = {  # a job of POST /jobs, plus the workflow's fields
        "type": "object",
        "required": ["name", *job_submission["required"]],
        "additionalProperties": False,
        "properties": {
            **job_submission["properties"],
            "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": MAX_NAME, "description": "Unique in the workflow"},
            "params": {"description": "As for POST /jobs; {\"$ref\": \"JOB.result.KEY...\"} anywhere is replaced "
                                      "by that job's result value when this job is released"},
            "after": {**names, "description": "Jobs that must complete first"},
            "outputs": {**paths, "description": "Files the job promises in its run dir"},
            "inputs": {
                "type": "array",
                "description": "Files of other jobs, placed in this job's run dir before it starts",
                "items": {
                    "type": "object",
                    "required": ["job", "path"],
                    "additionalProperties": False,
                    "properties": {
                        "job": {"type": "string", "pattern": NAME_PATTERN},
                        "path": {"type": "string", "minLength": 1, "description": "One of that job's outputs"},
                        "dest": {"type": "string", "minLength": 1, "description": "Where it goes here (default: path)"},
                    },
                },
            },
        },
    }
    return {
        "WorkflowDocument": {
            "type": "object",
            "required": ["name", "jobs"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": MAX_NAME,
                         "description": "A name the caller has already: its next version"},
                "description": {"type": "string"},
                "on_failure": {"type": "string", "enum": ["cancel_dependents", "continue"], "default": "cancel_dependents"},
                "jobs": {"type": "array", "minItems": 1, "items": workflow_job},
            },
        },
        "Workflow": {"type": "object", "required": list(view_properties), "properties": view_properties},
        "WorkflowDetail": {
            "type": "object",
            "required": [*view_properties, "document", "jobs"],
            "properties": {
                **view_properties,
                "document": {"type": "object", "description": "The current version's document, normalized"},
                "jobs": {"type": "array", "items": {"type": "object", "required": list(detail_job_properties),
                                                    "properties": detail_job_properties}},
            },
        },
        "WorkflowPage": {
            "type": "object",
            "required": ["workflows", "next"],
            "properties": {
                "workflows": {"type": "array", "items": ref("Workflow")},
                "next": {"type": ["string", "null"], "description": "Pass as `after` for the next page"},
            },
        },
        "WorkflowStatus": {
            "type": "object",
            "required": ["id", "name", "run", "state", "counts", "jobs", "started_at", "finished_at"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "run": {"type": "integer", "minimum": 0},
                "state": {"type": "string", "enum": workflow_states},
                "counts": counts,
                "jobs": {"type": "array", "items": {"type": "object", "required": list(status_job_properties),
                                                    "properties": status_job_properties}},
                "started_at": _NULLABLE_TIME,
                "finished_at": _NULLABLE_TIME,
            },
        },
        "WorkflowHistory": {
            "type": "object",
            "required": ["versions"],
            "properties": {"versions": {"type": "array", "items": {
                "type": "object",
                "required": ["id", "version", "author", "message", "created_at", "sha256"],
                "properties": {
                    "id": {"type": "string"},
                    "version": {"type": "integer", "minimum": 1},
                    "author": {"type": "string"},
                    "message": {"type": "string"},
                    "created_at": _TIME,
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "Of the stored document"},
                },
            }}},
        },
        "WorkflowDeleted": {
            "type": "object",
            "required": ["id", "deleted"],
            "properties": {"id": {"type": "string"}, "deleted": {"const": True}},
        },
    }
