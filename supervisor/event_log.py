"""The events of the store: recorded before a commit, numbered when their batch is taken,
committed with it (table `events`), published after it, and pruned in the background.

An event's id is assigned here, in memory, when its batch is taken for its commit: batches
commit one after the other, so ids increase in commit order, and a reader that has seen id N
has seen every committed event below N (`supervisor.store` reads the largest id at open and
goes on from it). Job transitions become events without anyone asking (the `Transition` the
store records is the source); progress reports are coalesced, one per job per batch, the last
value winning, so a chatty job costs one row a commit at most.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from jobvisor.ids import JobId, UserId
from jobvisor.protocol.events import Event, EventKind
from supervisor import tables
from supervisor.compute_job import Transition

PRUNE_CHUNK = 5000  # events looked at (and deleted at most) in one pruning transaction

_TRANSITION = EventKind.TRANSITION


class Emitted:
    """An event recorded for the next commit; `id` is set when its batch is numbered."""

    __slots__ = ("kind", "owner", "data", "job_id", "workflow_id", "at", "id")

    def __init__(self, kind: EventKind, owner: UserId, data: dict, job_id: JobId | None, workflow_id: str | None,
                 at: float | None = None) -> None:
        self.kind = kind
        self.owner = owner
        self.data = data
        self.job_id = job_id
        self.workflow_id = workflow_id
        self.at = time.time() if at is None else at
        self.id: int | None = None

    def to_event(self, event_id: int) -> Event:
        return Event(event_id, self.kind, self.owner, self.at, self.job_id, self.workflow_id, self.data)


# What a batch's event list holds, in the order recorded: a transition, an emitted event, or
# None where a job's progress was replaced by a later one of the same batch.
Source = Transition | Emitted | None


def number(sources: Sequence[Source], first_id: int) -> list[Event]:
    """The batch's events, ids from `first_id` on, in the order they were recorded."""
    events: list[Event] = []
    next_id = first_id
    for s in sources:
        if s is None:
            continue
        if type(s) is Transition:
            events.append(Event(next_id, _TRANSITION, s.owner, s.at, s.job_id, s.workflow_id, {
                "state": s.state.value, "attempt": s.attempt, "reason": s.reason, "exit_code": s.exit_code,
            }))
        else:
            s.id = next_id
            events.append(s.to_event(next_id))
        next_id += 1
    return events


def event_of_row(row: Any) -> Event:
    return Event(row.id, EventKind(row.kind), UserId(row.owner), row.at, row.job_id, row.workflow_id, row.data or {})


def prunable_prefix(rows: Sequence[tuple[int, float]], before_at: float, upto_id: int, keep_from: int) -> int | None:
    """Of the oldest events (`rows`: (id, at) by id), the last id of the run that may go: an
    event goes when it is older than `before_at` or its id is at most `upto_id`, and never
    from `keep_from` on. The run stops at the first one that stays (ids and times grow
    together, so what follows it is newer still)."""
    last = None
    for event_id, at in rows:
        if event_id >= keep_from or (at >= before_at and event_id > upto_id):
            break
        last = event_id
    return last


def prune_step(conn: Connection, before_at: float, upto_id: int, keep_from: int) -> int:
    """One pruning transaction's work on `conn` (sync, or an async connection's `run_sync`):
    look at the PRUNE_CHUNK oldest events, delete the run of them that may go; the count
    deleted (all of them: call again)."""
    rows = conn.execute(select(tables.events.c.id, tables.events.c.at).order_by(tables.events.c.id).limit(PRUNE_CHUNK)).all()
    last = prunable_prefix([(r[0], r[1]) for r in rows], before_at, upto_id, keep_from)
    if last is None:
        return 0
    return conn.execute(delete(tables.events).where(tables.events.c.id <= last)).rowcount
