"""The seam between the store and its database: a batch of writes, and the one interface that
commits it, with one implementation per kind of database.

`supervisor.store.Store` collects what the supervisor records into a `Batch` and hands each
batch to its `BatchWriter`: `supervisor.sqlite_writer.SqliteWriter` (plain SQL on a sqlite3
connection, on the loop for a few rows or in one writer thread) or
`supervisor.postgres_writer.PostgresWriter` (SQLAlchemy Core on the async engine, one
executemany per table). Which one is chosen once, from the URL (`writer_for`); nothing else in
the store knows which database it writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from sqlalchemy import bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from supervisor import tables
from jobvisor.protocol.events import Event
from supervisor.compute_job import ComputeJob, Transition
from supervisor.event_log import Source


@dataclass
class Batch:
    """Everything recorded since the last commit, committed in one transaction."""

    inserts: dict[str, ComputeJob] = field(default_factory=dict)
    dirty: dict[str, ComputeJob] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    statements: list[tuple[Any, Any]] = field(default_factory=list)  # SQLAlchemy statements, params
    waiters: list[asyncio.Future] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    urgent: bool = False  # holds more than lazy records: commit without waiting for more
    # the events, in the order recorded (`supervisor.event_log`), and where each job's progress
    # event is among them (a later one replaces it)
    sources: list[Source] = field(default_factory=list)
    progress: dict[str, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)  # `sources` numbered, when the batch is taken

    def empty(self) -> bool:
        return not (self.inserts or self.dirty or self.transitions or self.statements or self.sources)

    @property
    def rows(self) -> int:
        return len(self.inserts) + len(self.dirty) + len(self.transitions) + len(self.sources)


class BatchWriter(Protocol):
    """Commits batches to one database. `commit` takes its snapshot of the jobs' rows before
    its first await (the supervisor goes on changing the jobs meanwhile), then writes them in
    one transaction. Errors: SQLAlchemyError, the driver's own error, or OSError; the store
    keeps the batch and retries. (Log bytes are not part of a batch: `supervisor.log_writer`.)"""

    async def open(self) -> None: ...

    async def commit(self, batch: Batch) -> None: ...

    async def prune(self, before_at: float, upto_id: int, keep_from: int) -> int:
        """One step of pruning events (`supervisor.event_log.prune_step`), off the loop; the
        count deleted."""

    async def close(self) -> None: ...


UPDATE_JOB = (
    update(tables.jobs)
    .where(tables.jobs.c.id == bindparam("_id"))
    .values({c: bindparam(c) for c in ComputeJob.MUTABLE_COLUMNS})
)
INSERT_JOB = insert(tables.jobs)
INSERT_TRANSITION = insert(tables.transitions)
INSERT_EVENT = insert(tables.events)


def core_writes(batch: Batch) -> list[tuple[Any, Any]]:
    """The batch as SQLAlchemy Core statements with executemany rows (snapshots, taken now)."""
    writes: list[tuple[Any, Any]] = []
    if batch.inserts:
        writes.append((INSERT_JOB, [j.insert_row() for j in batch.inserts.values()]))
    if batch.dirty:
        writes.append((UPDATE_JOB, [j.row() for j in batch.dirty.values()]))
    if batch.transitions:
        writes.append((INSERT_TRANSITION, [
            {"job_id": t.job_id, "attempt": t.attempt, "state": t.state.value, "reason": t.reason, "at": t.at}
            for t in batch.transitions
        ]))
    if batch.events:
        writes.append((INSERT_EVENT, [
            {"id": e.id, "at": e.at, "kind": e.kind.value, "owner": e.owner, "job_id": e.job_id,
             "workflow_id": e.workflow_id, "data": e.data}
            for e in batch.events
        ]))
    writes.extend(batch.statements)
    return writes


def writer_for(url: str, engine: AsyncEngine, *, inline_rows: int) -> BatchWriter:
    """The writer for the database at `url` (the store's async `engine` is shared for reads)."""
    if engine.dialect.name == "sqlite":
        from supervisor.sqlite_writer import SqliteWriter

        return SqliteWriter(url, inline_rows=inline_rows)
    from supervisor.postgres_writer import PostgresWriter

    return PostgresWriter(engine)
