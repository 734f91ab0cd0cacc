"""The store's hot statements (new jobs, changed jobs, transitions, events) as plain SQL with
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
from jobvisor.protocol.events import Event, EventKind
from supervisor.compute_job import ComputeJob, Transition

_FIXED, _MUTABLE = ComputeJob.FIXED_COLUMNS, ComputeJob.MUTABLE_COLUMNS
_JSON_AT = tuple(_MUTABLE.index(c) for c in ComputeJob.JSON_COLUMNS)

INSERT_JOBS = (
    f"INSERT INTO {tables.jobs.name} ({', '.join(_FIXED + _MUTABLE)}) "
    f"VALUES ({', '.join('?' * len(_FIXED + _MUTABLE))})"
)
UPDATE_JOBS = f"UPDATE {tables.jobs.name} SET {', '.join(f'{c} = ?' for c in _MUTABLE)} WHERE id = ?"
INSERT_TRANSITIONS = f"INSERT INTO {tables.transitions.name} (job_id, attempt, state, reason, at) VALUES (?, ?, ?, ?, ?)"
INSERT_EVENTS = (
    f"INSERT INTO {tables.events.name} (id, at, kind, owner, job_id, workflow_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_dumps = json.dumps
_quote = json.encoder.encode_basestring_ascii  # what json.dumps quotes a string with (ensure_ascii)
_TRANSITION = EventKind.TRANSITION


def _mutable(job: ComputeJob) -> tuple:
    values = list(job.mutable_values())
    for i in _JSON_AT:
        value = values[i]
        # most rows have no result or info: json.dumps was a third of building a row
        values[i] = "null" if value is None else _dumps(value)
    return tuple(values)


def insert_rows(jobs: Iterable[ComputeJob]) -> list[tuple]:
    return [j.fixed_values() + _mutable(j) for j in jobs]


def update_rows(jobs: Iterable[ComputeJob]) -> list[tuple]:
    return [_mutable(j) + (j.id,) for j in jobs]


def transition_rows(transitions: Iterable[Transition]) -> list[tuple]:
    return [(t.job_id, t.attempt, t.state.value, t.reason, t.at) for t in transitions]


def _transition_json(data: dict) -> str:
    """A transition event's data as json.dumps writes it, without its general walk: there are
    about four of these per job."""
    code = data["exit_code"]
    return (f'{{"state": "{data["state"]}", "attempt": {int(data["attempt"])}, "reason": {_quote(data["reason"])}, '
            f'"exit_code": {"null" if code is None else int(code)}}}')


def event_rows(events: Iterable[Event]) -> list[tuple]:
    return [
        (e.id, e.at, e.kind.value, e.owner, e.job_id, e.workflow_id,
         _transition_json(e.data) if e.kind is _TRANSITION else _dumps(e.data))
        for e in events
    ]
