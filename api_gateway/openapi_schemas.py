"""The component schemas of the OpenAPI document (`api_gateway.openapi`): the shapes of what
the API takes and answers, including the events of its server-sent event streams."""

from __future__ import annotations

from jobvisor.limits import MAX_USER_EVENT_BYTES
from jobvisor.protocol.events import EventKind
from jobvisor.resources import MAX_MEMORY
from jobvisor.states import RETRY_ON_STATES, JobState

from api_gateway.events import EndReason

RETRY_ON = sorted(s.value for s in RETRY_ON_STATES)


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _sse_event(name: str, data: dict) -> dict:
    """One server-sent event as a client reads it: its `event` name, its `data` (a JSON
    document of the shape `data`) and, where it can resume from there, its `id`."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }


def _stream_schemas(states: list[str]) -> dict:
    """The events of the two streams: a job's log (GET /jobs/{id}/log?follow=1) and the
    caller's events (GET /events)."""
    return {
        "LogStreamEvent": {"oneOf": [
            _sse_event("log", {
                "type": "object",
                "required": ["offset", "next", "text"],
                "properties": {
                    "offset": {"type": "integer", "description": "Byte offset of `text` in the log"},
                    "next": {"type": "integer", "description": "Where the next event starts (also its `id`)"},
                    "text": {"type": "string"},
                },
            }),
            _sse_event("end", {
                "type": "object",
                "required": ["state", "exit_code"],
                "properties": {"state": {"type": "string", "enum": states}, "exit_code": {"type": ["integer", "null"]}},
            }),
            _sse_event("error", {
                "type": "object",
                "required": ["status", "detail"],
                "properties": {"status": {"type": "integer"}, "detail": {"type": "string"}},
            }),
        ]},
        "EventStreamEvent": {"oneOf": [
            *(_sse_event(kind.value, ref("Event")) for kind in EventKind),
            _sse_event("pruned", {
                "type": "object",
                "required": ["since", "detail"],
                "properties": {"since": {"type": "integer"}, "detail": {"type": "string"}},
            }),
            _sse_event("reconnect", {
                "type": "object",
                "required": ["reason", "last_id", "detail"],
                "properties": {
                    "reason": {"type": "string", "enum": [r.value for r in EndReason]},
                    "last_id": {"type": "integer", "description": "The last event id sent: reconnect with it as Last-Event-ID"},
                    "detail": {"type": "string"},
                },
            }),
        ]},
    }


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
        "info": {"type": "object", "description": "Driver details of the run (pid, container, Slurm job id); once its process ended on a local or docker agent, `max_rss` (peak resident bytes) and `cpu_seconds` (user + system), as sacct's MaxRSS and CPUTime"},
        "agent_id": {"type": ["string", "null"], "description": "The agent running the job's current attempt"},
        "retry_on": {"type": "array", "items": {"type": "string", "enum": RETRY_ON}, "uniqueItems": True,
                     "description": "The end states that start a new attempt while max_retries allows (lost always)"},
        "retry_at": {**nullable_time, "description": "A retry waiting out its backoff queues at this time; null otherwise"},
    }
    optional = {  # present only when the job has them
        "workflow_id": {"type": "string", "description": "The workflow it belongs to"},
        "workflow_job": {"type": "string", "description": "Its name in the workflow"},
        "workflow_run": {"type": "integer", "minimum": 1, "description": "The workflow's run it belongs to"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "As submitted"},
        "workdir": {"type": "string", "description": "Where it runs in place"},
        "inputs": {"type": "array", "description": "Its uploaded input files",
                   "items": {"type": "object", "required": ["path", "size"],
                             "properties": {"path": {"type": "string"}, "size": {"type": "integer"}}}},
        "array_id": {"type": "string", "description": "The job array (the id of its first job)"},
        "array_index": {"type": "integer", "minimum": 0, "description": "This element's index (JOBVISOR_ARRAY_INDEX)"},
        "array_cap": {"type": ["integer", "null"], "minimum": 1, "description": "How many of the array run at once; null: no cap"},
    }
    return {"type": "object", "required": list(properties), "properties": {**properties, **optional}}


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
                "at": {"type": "string", "format": "date-time"},
            },
        },
    }
    return {
        "type": "object",
        "required": [*job["required"], "history"],
        "properties": {**job["properties"], "history": history},
    }


def schemas() -> dict:
    from api_gateway import openapi_workflows

    states = [s.value for s in JobState]
    job_submission = {
            "type": "object",
            "required": ["code", "params"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "minLength": 1, "description": "shell, python, demo or a plugin"},
                "params": {"description": "Code-specific parameters (shell: {argv} or {script}, python: {entry, args}, "
                           "demo: {steps, dt, ...}), checked at submit for these built-in codes; a plugin's "
                           "are checked where it runs"},
                "resources": ref("Resources"),
                "driver": {"type": ["string", "null"], "description": "local, docker, sbatch; empty or null: the default"},
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0,
                                "description": "New attempts after one that ended in a retry_on state (lost always)"},
                "name": {"type": ["string", "null"], "description": "Empty or null: none"},
                "env": {"type": ["object", "null"], "additionalProperties": {"type": "string"},
                        "description": "Environment variables of the job, for every code; they win over a shell "
                                       "job's params.env, and JOBVISOR_* variables win over both"},
                "workdir": {"type": ["string", "null"], "description": "Absolute directory the job runs in instead "
                            "of its run dir (local driver only, under a directory `[local] workdirs` allows; its "
                            "log stays in the run dir)"},
                "retry_on": {
                    "description": "End states, besides lost, that start a new attempt while max_retries allows "
                                   "(after a backoff: [supervisor] retry_backoff, doubled each time): a list, "
                                   "or one comma-separated string",
                    "oneOf": [
                        {"type": "array", "items": {"type": "string", "enum": RETRY_ON}},
                        {"type": "string"},
                        {"type": "null"},
                    ],
                },
            },
        }
    return {
        **openapi_workflows.schemas(job_submission),
        **_stream_schemas(states),
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
                "memory": {"type": ["string", "number"], "exclusiveMinimum": 0, "maximum": MAX_MEMORY,
                           "description": "'512M', '2G', '100b'; a bare number (512 or '512') is megabytes, as in Slurm"},
                "gpus": {"type": "integer", "minimum": 0, "default": 0},
                "walltime": {"type": ["string", "number"], "exclusiveMinimum": 0, "maxLength": 32,
                             "description": "'HH:MM:SS', 'D-HH:MM:SS' or seconds"},
                "nodes": {"type": "integer", "minimum": 1, "default": 1},
            },
            "additionalProperties": True,
        },
        "JobSubmission": {**job_submission, "properties": {**job_submission["properties"], "array": {
            "type": ["string", "null"],
            "description": "A job array, only for a job submitted alone: one job per index, as sbatch --array: "
                           "'1-100', '1,3,5-9', '0-99:2', with '%10' at the end to run at most 10 at once. "
                           "Each job sees its index as JOBVISOR_ARRAY_INDEX. At most [gateway] max_array elements",
        }}},
        "JobForm": {
            "type": "object",
            "required": ["job"],
            "description": "A job (or a list of jobs) with input files, each placed in the run dir at its "
                           "filename (a relative path) before the job starts; every job of a list gets every file",
            "properties": {
                "job": {"oneOf": [ref("JobSubmission"), {"type": "array", "items": ref("JobSubmission"), "minItems": 1}]},
                "file": {"type": "array", "items": {"type": "string", "contentMediaType": "application/octet-stream"},
                         "description": "Input files; each part's filename is its path in the run dir "
                                        "(percent-decoded: a client may send data%2Fin.txt for data/in.txt)"},
            },
        },
        "Resubmit": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "params": {"type": "object", "description": "Dotted keys into the old job's params and their new values"},
            },
        },
        "JobArray": {
            "type": "object",
            "description": "A submitted job array: its jobs are listed by GET /jobs?array={array_id}",
            "required": ["array_id", "count", "array", "cap", "owner", "state", "created_at", "job_ids"],
            "properties": {
                "array_id": {"type": "string", "description": "The id of its first job"},
                "count": {"type": "integer", "minimum": 1},
                "array": {"type": "string", "description": "The indexes (and cap) in their shortest form"},
                "cap": {"type": ["integer", "null"], "minimum": 1},
                "owner": {"type": "string"},
                "state": {"type": "string", "enum": states},
                "created_at": {"type": "string", "format": "date-time"},
                "job_ids": {"type": "array", "items": {"type": "string"}, "description": "In index order"},
            },
        },
        "Job": _job_schema(states),
        "JobDetail": _job_detail_schema(states),
        "JobPage": {
            "type": "object",
            "required": ["jobs", "next"],
            "properties": {
                "jobs": {"type": "array", "items": ref("Job")},
                "next": {"type": ["string", "null"], "description": "Pass as `after` for the next page"},
            },
        },
        "Event": {
            "type": "object",
            "required": ["id", "kind", "at", "owner", "job_id", "workflow_id", "data"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1, "description": "Increasing in commit order, across restarts"},
                "kind": {"type": "string", "enum": [k.value for k in EventKind],
                         "description": "transition: data {state, attempt, reason, exit_code}; progress: data "
                                        "{state, attempt, progress, message}; workflow: the workflow's change; user: "
                                        "as pushed; system: timers and admin actions"},
                "at": {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"},
                "owner": {"type": "string"},
                "job_id": {"type": ["string", "null"]},
                "workflow_id": {"type": ["string", "null"]},
                "data": {"type": "object"},
            },
        },
        "EventPage": {
            "type": "object",
            "required": ["events", "next", "last_id", "pruned"],
            "properties": {
                "events": {"type": "array", "items": ref("Event")},
                "next": {"type": ["integer", "null"], "description": "Pass as `since` for the next page; null: none left now"},
                "last_id": {"type": "integer", "description": "The newest committed event's id (anyone's): a stream that "
                                                             "starts from it misses nothing from now on"},
                "pruned": {"type": "boolean", "description": "Events after `since` were pruned already: what follows "
                                                            "it is not all"},
            },
        },
        "UserEvent": {
            "type": "object",
            "required": ["data"],
            "additionalProperties": False,
            "properties": {
                "data": {"type": "object", "description": f"Any JSON object of at most {MAX_USER_EVENT_BYTES} bytes"},
                "job_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64, "description": "One of the caller's jobs"},
                "workflow_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64, "description": "One of the caller's workflows"},
            },
        },
        "FileList": {
            "type": "object",
            "properties": {
                "files": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"path": {"type": "string"}, "size": {"type": "integer"},
                                       "mtime": {"type": "string", "format": "date-time"}},
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
        "WhoAmI": {
            "type": "object", "required": ["user", "admin"], "additionalProperties": False,
            "properties": {"user": {"type": "string"}, "admin": {"type": "boolean"}},
        },
        "Agents": {
            "type": "object",
            "properties": {
                "agents": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "user": {"type": "string"},
                            "kind": {"type": "string", "description": "The driver target it runs under"},
                            "state": {"type": "string"},
                            "pid": {"type": ["integer", "null"]},
                            "host": {"type": ["string", "null"]},
                            "jobs": {"type": "integer", "description": "Jobs it has now"},
                            "connected_at": {"type": ["string", "null"], "format": "date-time"},
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
                "uptime": {"type": "number", "description": "Seconds since the supervisor started"},
                "started_at": {"type": "string", "format": "date-time"},
                "gateway": {"type": "object"},
                "drivers": {"type": "object", "description": "Each driver in use by target: the local driver says how "
                            "it enforces jobs' memory and cpus (limits: cgroup, rlimit or none; memory; cpus; why)",
                            "additionalProperties": {"type": "object"}},
            },
        },
    }
