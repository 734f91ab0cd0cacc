"""What a workflow looks like from outside: its view, the list, its status, the jobs of its
current run, its history of versions. Reads only: nothing here changes a workflow or a job.

A running workflow is read from memory (its row in the `RunBook`, its jobs in the `JobBook`),
since its committed rows lag behind; a finished one from the database (its row's info keeps
its counts by job state, so its view needs no look at its jobs). The keys of each view are the
gateway's OpenAPI schemas (api_gateway.openapi_workflows) exactly.
"""

from __future__ import annotations

import collections

from jobvisor.errors import NotFound
from jobvisor.ids import UserId
from jobvisor.isotime import iso
from jobvisor.limits import MAX_PAGE
from jobvisor.protocol.common import Caller
from jobvisor.states import JobState
from supervisor.compute_job import ComputeJob
from supervisor.jobs import JobBook
from supervisor.store import Store
from supervisor.workflow_runs import RunBook
from supervisor.workflow_store import WorkflowRecord, WorkflowStore


class WorkflowViews:
    def __init__(self, store: Store, rows: WorkflowStore, jobs: JobBook, runs: RunBook) -> None:
        self.store = store
        self.rows = rows
        self._jobs = jobs
        self._book = runs

    async def owned(self, caller: Caller, workflow_id: str) -> WorkflowRecord:
        """The workflow's record (the running one's, from memory) if `caller` may see it;
        NotFound otherwise, so that another user's workflow is not told apart from none."""
        run = self._book.runs.get(workflow_id)
        record = run.record if run is not None else None
        if record is None:
            await self.store.committed()
            record = await self.rows.get(workflow_id)
        if record is None or (record.owner != caller.user and not caller.is_admin):
            raise NotFound(f"no workflow {workflow_id!r}")
        return record

    def _counts(self, record: WorkflowRecord) -> dict[str, int]:
        run = self._book.runs.get(record.id)
        if run is not None and run.record.run == record.run:
            # the graph knows waiting, queued and ended; a queued job may be starting or running by now
            counts = collections.Counter(run.graph.counts_by_state())
            queued = counts.pop(JobState.QUEUED.value, 0)
            if queued:
                for i, job_id in enumerate(run.graph.job_ids):
                    if job_id is not None and run.graph.state(i) is JobState.QUEUED:
                        job = self._jobs.get(job_id)
                        counts[(job.state if job is not None else JobState.QUEUED).value] += 1
            return {state: n for state, n in counts.items() if n}
        return dict(record.info.get("counts", {}))

    def view(self, record: WorkflowRecord) -> dict:
        return {
            "id": record.id, "name": record.name, "version": record.version, "state": record.state.value,
            "on_failure": record.on_failure, "run": record.run, "reason": record.reason, "counts": self._counts(record),
            "created_at": iso(record.created_at), "updated_at": iso(record.updated_at),
            "started_at": iso(record.started_at), "finished_at": iso(record.finished_at), "owner": record.owner,
            "jobs_total": int(record.info.get("jobs_total", 0)),
        }

    async def list(self, caller: Caller, limit: int, after: str) -> dict:
        limit = max(1, min(limit, MAX_PAGE))
        await self.store.committed()
        records = await self.rows.page(None if caller.is_admin else UserId(caller.user), limit + 1, after)
        more = len(records) > limit
        records = records[:limit]
        views = [self.view(self._current(r)) for r in records]
        return {"workflows": views, "next": records[-1].id if more else None}

    def _current(self, record: WorkflowRecord) -> WorkflowRecord:
        run = self._book.runs.get(record.id)
        return run.record if run is not None else record

    async def _run_jobs(self, record: WorkflowRecord) -> list[dict]:
        """The current run's jobs: a job still in the book as it is there, the others as
        committed. The book is looked at before the read: a job that leaves it (its end
        committed) after that look is still shown from the book, never from a row read
        before its end was committed."""
        if record.run == 0:
            return []
        live: dict[str, ComputeJob] = {}
        run = self._book.runs.get(record.id)
        if run is not None and run.record.run == record.run:
            for job_id in run.graph.job_ids:
                job = self._jobs.get(job_id) if job_id is not None else None
                if job is not None:
                    live[job_id] = job
        await self.store.committed()
        out = []
        for row in await self.rows.run_jobs(record.id, record.run):
            job = live.get(row.id) or self._jobs.get(row.id)
            if job is not None:
                out.append({
                    "name": row.workflow_job, "job_id": row.id, "state": job.state.value, "reason": job.reason,
                    "exit_code": job.exit_code, "progress": job.progress, "started_at": iso(job.started_at),
                    "finished_at": iso(job.finished_at),
                })
            else:
                out.append({
                    "name": row.workflow_job, "job_id": row.id, "state": row.state, "reason": row.reason,
                    "exit_code": row.exit_code, "progress": row.progress, "started_at": iso(row.started_at),
                    "finished_at": iso(row.finished_at),
                })
        return out

    async def get(self, caller: Caller, workflow_id: str) -> dict:
        record = await self.owned(caller, workflow_id)
        document = await self.rows.document(record.id, record.version)
        # the jobs' states and the workflow's are taken at one moment: no await after the jobs are read
        jobs = await self._run_jobs(record)
        if not jobs:  # never run: the document's jobs, not run yet
            jobs = [{"name": job.get("name", ""), "job_id": None, "state": None, "reason": "", "exit_code": None,
                     "progress": None, "started_at": None, "finished_at": None} for job in document.get("jobs", [])]
        return {**self.view(self._current(record)), "document": document, "jobs": jobs}

    async def status(self, caller: Caller, workflow_id: str) -> dict:
        record = self._current(await self.owned(caller, workflow_id))
        jobs = [{"name": j["name"], "job_id": j["job_id"], "state": j["state"]} for j in await self._run_jobs(record)]
        return {"id": record.id, "name": record.name, "run": record.run, "state": record.state.value,
                "counts": self._counts(record), "jobs": jobs, "started_at": iso(record.started_at),
                "finished_at": iso(record.finished_at)}

    async def history(self, caller: Caller, workflow_id: str) -> dict:
        record = await self.owned(caller, workflow_id)
        return {"versions": [
            {"id": v.id, "version": v.version, "author": v.author, "message": v.message,
             "created_at": iso(v.created_at), "sha256": v.sha256}
            for v in await self.rows.versions(record.id)
        ]}
