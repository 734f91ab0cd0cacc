"""The store's three hot statements (new jobs, changed jobs, transitions) as plain SQL with
positional rows, for SQLite's executemany.

Through SQLAlchemy Core, every row of an executemany is a dict that goes through parameter
construction and one bind processor per column; with four transitions per job that Python
work was the largest single cost of the supervisor per job. Here a row is one tuple, built on
the loop thread when the batch is taken (a snapshot, like `ComputeJob.row`), and sqlite3 binds
it in C. Only for SQLite: other databases keep SQLAlchemy's statements (`supervisor.store`).

JSON columns are serialised as SQLAlchemy's JSON type does (`json.dumps`, so None is the JSON
`null`), so rows written here read back exactly like rows written through SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from supervisor import tables
from supervisor.compute_job import ComputeJob, Transition

_MUTABLE = (
    "state", "attempt", "reason", "exit_code", "result", "agent_id", "info", "started_at",
    "finished_at", "updated_at", "progress", "progress_message",
)
_FIXED = ("id", "owner", "name", "code", "spec", "driver", "cpus", "max_retries", "created_at")

INSERT_JOBS = (
    f"INSERT INTO {tables.jobs.name} ({', '.join(_FIXED + _MUTABLE)}) "
    f"VALUES ({', '.join('?' * len(_FIXED + _MUTABLE))})"
)
UPDATE_JOBS = f"UPDATE {tables.jobs.name} SET {', '.join(f'{c} = ?' for c in _MUTABLE)} WHERE id = ?"
INSERT_TRANSITIONS = f"INSERT INTO {tables.transitions.name} (job_id, attempt, state, reason, at) VALUES (?, ?, ?, ?, ?)"

_dumps = json.dumps


def _mutable(job: ComputeJob) -> tuple:
    return (
        job.state.value, job.attempt, job.reason, job.exit_code, _dumps(job.result), job.agent_id,
        _dumps(job.info), job.started_at, job.finished_at, job.updated_at, job.progress, job.progress_message,
    )


def insert_rows(jobs: Iterable[ComputeJob]) -> list[tuple]:
    return [
        (j.id, j.owner, j.name, j.code, j.spec, j.driver, j.cpus, j.max_retries, j.created_at) + _mutable(j)
        for j in jobs
    ]


def update_rows(jobs: Iterable[ComputeJob]) -> list[tuple]:
    return [_mutable(j) + (j.id,) for j in jobs]


def transition_rows(transitions: Iterable[Transition]) -> list[tuple]:
    return [(t.job_id, t.attempt, t.state.value, t.reason, t.at) for t in transitions]
