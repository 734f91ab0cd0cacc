"""What users (and timers) ask of a workflow that changes it: publish a version, execute it,
cancel its run, delete it.

They run one at a time (one lock): each reads the workflow's row, decides, and commits before
the next reads it, so two publishes never make the same version and an execute never races a
delete. A published version gets its sha256 and is kept with its author and message
(supervisor.workflow_store); executing makes a run (supervisor.workflow_start); a cancel or a
delete of a running workflow cancels its jobs through the one cancel path, and the run ends
with the last of them (supervisor.workflow_runs).
"""

from __future__ import annotations

import asyncio
import time

from jobvisor.errors import Conflict
from jobvisor.ids import UserId, new_workflow_id
from jobvisor.protocol.common import Caller
from jobvisor.states import WorkflowState
from supervisor.store import Store
from supervisor.workflow_docs import WorkflowDocs
from supervisor.workflow_runs import RunBook
from supervisor.workflow_start import RunStarter
from supervisor.workflow_store import VersionRecord, WorkflowRecord, WorkflowStore, canonical_json, sha256_of
from supervisor.workflow_views import WorkflowViews


class WorkflowCommands:
    def __init__(self, store: Store, rows: WorkflowStore, docs: WorkflowDocs, runs: RunBook, starter: RunStarter,
                 views: WorkflowViews) -> None:
        self.store = store
        self.rows = rows
        self._docs = docs
        self._runs = runs
        self._starter = starter
        self._views = views
        self._lock = asyncio.Lock()  # one publish, execute, cancel or delete at a time

    async def publish(self, caller: Caller, document: dict, message: str, execute: bool) -> dict:
        owner = UserId(caller.user)
        doc = await self._docs.parse(document)
        placed = self._docs.check(doc)
        data = canonical_json(document)  # the gateway's normalized form (WorkflowDoc.to_json), as parsed
        async with self._lock:
            await self.store.committed()
            record = await self.rows.by_name(owner, doc.name)
            now = time.time()
            if record is None:
                record = WorkflowRecord(
                    id=new_workflow_id(), owner=owner, name=doc.name, version=1, state=WorkflowState.DRAFT,
                    on_failure=doc.on_failure.value, run=0, reason="published", created_at=now, updated_at=now,
                    info={"jobs_total": len(doc.jobs)})
                self.rows.insert(record)
            else:
                if record.id in self._runs.runs:
                    raise Conflict(f"workflow {record.id} ({record.name}) is running; cancel it or wait for its end "
                                   "before publishing a new version")
                record.version += 1
                record.state = WorkflowState.DRAFT
                record.on_failure = doc.on_failure.value
                record.reason = f"version {record.version} published"
                record.updated_at = now
                record.info = {"jobs_total": len(doc.jobs)}
                self.rows.save(record)
            self.rows.add_version(VersionRecord(
                id=new_workflow_id(), workflow_id=record.id, version=record.version, author=owner, message=message,
                created_at=now, sha256=sha256_of(data)), data)
            self.rows.emit(record, {})
            await self.store.committed()
            if execute:
                await self._starter.start(record, doc, "published with execute", placed)
        return self._views.view(record)

    async def execute(self, owner: UserId, workflow_id: str, reason: str) -> dict:
        """Start a new run of the workflow's current version (timers call this too)."""
        return await self.execute_as(Caller(user=owner), workflow_id, reason)

    async def execute_as(self, caller: Caller, workflow_id: str, reason: str = "executed") -> dict:
        async with self._lock:
            record = await self._views.owned(caller, workflow_id)
            doc = await self._docs.parse(await self.rows.document(record.id, record.version))
            await self._starter.start(record, doc, reason, self._docs.check(doc))
            return self._views.view(record)

    async def cancel(self, caller: Caller, workflow_id: str) -> dict:
        async with self._lock:
            record = await self._views.owned(caller, workflow_id)
            run = self._runs.runs.get(record.id)
            if run is not None:
                self._runs.cancel_run(run, "canceled by user" if caller.user == record.owner else f"canceled by {caller.user}")
            await self.store.committed()
            return self._views.view(run.record if run is not None else record)

    async def delete(self, caller: Caller, workflow_id: str, force: bool) -> dict:
        async with self._lock:
            record = await self._views.owned(caller, workflow_id)
            run = self._runs.runs.get(record.id)
            if run is not None:
                if not force:
                    raise Conflict(f"workflow {record.id} ({record.name}) is running; cancel it first, or delete it with force (?force=true; jobvisor workflow delete --force)")
                self._runs.cancel_run(run, "canceled: the workflow was deleted")
                self._runs.runs.pop(record.id, None)  # its jobs end as jobs; there is no workflow left to end
            self.rows.delete(record.id)
            self.rows.emit_deleted(record)
            await self.store.committed()
            return {"id": record.id, "deleted": True}
