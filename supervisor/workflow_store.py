"""Persistence of workflows: their rows, their published versions, their runs' jobs, and the
`workflow` events that announce a row's change.

Writes go into the store's next batch (`Store.execute`), so a workflow's change is committed
in the same transaction as the job changes that caused it (a run's jobs and the workflow
becoming `running`; a last job's end and the workflow's end). Reads go through the store's
engine after whatever was recorded before them is committed (the caller awaits that). An event
goes into the same batch as the row it announces, so none announces a change a crash undid.

A version's document is stored as canonical JSON (sorted keys, no blanks) with the sha256 of
exactly those bytes, so a later move of the history into git with content hashes finds the
same hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update

from jobvisor.ids import UserId
from jobvisor.protocol.events import EventKind
from jobvisor.states import WorkflowState
from supervisor import tables
from supervisor.store import Store


def canonical_json(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class WorkflowRecord:
    """One `workflows` row. `info` keeps the current version's job count and, once a run has
    ended, its counts by job state (so a finished workflow's view needs no look at its jobs)."""

    id: str
    owner: UserId
    name: str
    version: int
    state: WorkflowState
    on_failure: str
    run: int
    reason: str
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    info: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> "WorkflowRecord":
        return cls(
            id=row.id, owner=UserId(row.owner), name=row.name, version=row.version, state=WorkflowState(row.state),
            on_failure=row.on_failure, run=row.run, reason=row.reason, created_at=row.created_at,
            updated_at=row.updated_at, started_at=row.started_at, finished_at=row.finished_at, info=row.info or {},
        )

    def values(self) -> dict:
        out = asdict(self)
        out["state"] = self.state.value
        return out


@dataclass(frozen=True, slots=True)
class VersionRecord:
    id: str
    workflow_id: str
    version: int
    author: str
    message: str
    created_at: float
    sha256: str


# the columns of a run's job that the workflow's views and its restart read
RUN_JOB_COLUMNS = (
    tables.jobs.c.id, tables.jobs.c.workflow_job, tables.jobs.c.state, tables.jobs.c.reason, tables.jobs.c.exit_code,
    tables.jobs.c.progress, tables.jobs.c.started_at, tables.jobs.c.finished_at, tables.jobs.c.result,
    tables.jobs.c.driver,
)


class WorkflowStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ writes (into the next batch)

    def insert(self, record: WorkflowRecord) -> None:
        self.store.execute(insert(tables.workflows), [record.values()])

    def save(self, record: WorkflowRecord) -> None:
        values = record.values()
        workflow_id = values.pop("id")
        self.store.execute(update(tables.workflows).where(tables.workflows.c.id == workflow_id), [values])

    def add_version(self, version: VersionRecord, document: bytes) -> None:
        self.store.execute(insert(tables.workflow_versions), [{**asdict(version), "document": document}])

    def delete(self, workflow_id: str) -> None:
        self.store.execute(delete(tables.workflow_versions).where(tables.workflow_versions.c.workflow_id == workflow_id))
        self.store.execute(delete(tables.workflows).where(tables.workflows.c.id == workflow_id))

    def emit(self, record: WorkflowRecord, counts: dict[str, int]) -> None:
        """A `workflow` event for the record's state, with its run's counts by job state."""
        self.store.emit(EventKind.WORKFLOW, record.owner,
                        {"id": record.id, "name": record.name, "state": record.state.value, "version": record.version,
                         "run": record.run, "reason": record.reason, "counts": counts}, workflow_id=record.id)

    def emit_deleted(self, record: WorkflowRecord) -> None:
        self.store.emit(EventKind.WORKFLOW, record.owner, {"id": record.id, "name": record.name, "deleted": True},
                        workflow_id=record.id)

    def set_spec(self, job_id: str, spec: bytes) -> None:
        """A released job's params with its `$ref`s resolved (the spec is otherwise fixed)."""
        self.store.execute(update(tables.jobs).where(tables.jobs.c.id == job_id), [{"spec": spec}])

    # ------------------------------------------------------------------ reads

    async def get(self, workflow_id: str) -> WorkflowRecord | None:
        rows = await self.store.read(select(tables.workflows).where(tables.workflows.c.id == workflow_id))
        return WorkflowRecord.from_row(rows[0]) if rows else None

    async def by_name(self, owner: UserId, name: str) -> WorkflowRecord | None:
        rows = await self.store.read(
            select(tables.workflows).where(tables.workflows.c.owner == owner, tables.workflows.c.name == name))
        return WorkflowRecord.from_row(rows[0]) if rows else None

    async def page(self, owner: UserId | None, limit: int, after: str) -> list[WorkflowRecord]:
        query = select(tables.workflows)
        if owner is not None:
            query = query.where(tables.workflows.c.owner == owner)
        if after:
            query = query.where(tables.workflows.c.id < after)
        rows = await self.store.read(query.order_by(tables.workflows.c.id.desc()).limit(limit))
        return [WorkflowRecord.from_row(r) for r in rows]

    async def running(self) -> list[WorkflowRecord]:
        rows = await self.store.read(
            select(tables.workflows).where(tables.workflows.c.state == WorkflowState.RUNNING.value).order_by(tables.workflows.c.id))
        return [WorkflowRecord.from_row(r) for r in rows]

    async def document(self, workflow_id: str, version: int) -> dict:
        rows = await self.store.read(
            select(tables.workflow_versions.c.document).where(
                tables.workflow_versions.c.workflow_id == workflow_id, tables.workflow_versions.c.version == version))
        return json.loads(rows[0].document) if rows else {}

    async def versions(self, workflow_id: str) -> list[VersionRecord]:
        v = tables.workflow_versions.c
        rows = await self.store.read(
            select(v.id, v.workflow_id, v.version, v.author, v.message, v.created_at, v.sha256)
            .where(v.workflow_id == workflow_id).order_by(v.version))
        return [VersionRecord(r.id, r.workflow_id, r.version, r.author, r.message, r.created_at, r.sha256) for r in rows]

    async def run_jobs(self, workflow_id: str, run: int) -> list[Any]:
        """The rows (RUN_JOB_COLUMNS) of one run's jobs, in creation order."""
        return await self.store.read(
            select(*RUN_JOB_COLUMNS).where(tables.jobs.c.workflow_id == workflow_id, tables.jobs.c.workflow_run == run)
            .order_by(tables.jobs.c.id))
