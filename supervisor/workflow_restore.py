"""The running workflows put back after a restart, planned (a shutdown) or not (a crash).

`Recovery.restore` has adopted the unfinished jobs by then (waiting ones go to no queue); here
each running workflow's graph is rebuilt from its stored version and its jobs' rows (their
member columns), and what the stop interrupted is finished: a waiting job whose dependencies
all completed is released, one behind a failed dependency is canceled. Only `waiting` jobs are
ever released, and a release is committed with the job's row, so no job is released twice (a
released job reads back `queued`, and the rest of its life is the recovery of any queued job).

After a planned stop, the jobs the shutdown ended (noted in the workflow's row while the
`RunBook` was paused) start a new attempt first, so a workflow goes on across a planned
restart as across a crash.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from jobvisor.errors import OpError
from jobvisor.states import JobState, WorkflowState
from jobvisor.workflow_doc import OnFailure, WorkflowDoc
from supervisor.compute_job import ComputeJob
from supervisor.jobs import JobBook
from supervisor.store import Store
from supervisor.workflow_docs import WorkflowDocs
from supervisor.workflow_graph import RunGraph
from supervisor.workflow_runs import INTERRUPTED, RunBook, WorkflowRun
from supervisor.workflow_store import WorkflowRecord, WorkflowStore

log = logging.getLogger(__name__)

RESUMABLE = frozenset({JobState.CANCELED, JobState.LOST})  # how a job the shutdown interrupted may have ended


class WorkflowRestore:
    def __init__(self, store: Store, rows: WorkflowStore, jobs: JobBook, runs: RunBook, docs: WorkflowDocs) -> None:
        self.store = store
        self.rows = rows
        self._jobs = jobs
        self._runs = runs
        self._docs = docs

    async def restore(self) -> None:
        """After `Recovery.restore` adopted the unfinished jobs: rebuild every running
        workflow's run and finish what the stop interrupted (see the module's docstring)."""
        for record in await self.rows.running():
            document = await self.rows.document(record.id, record.version)
            try:  # the limit on jobs was checked when it was published
                doc = await self._docs.parse(document, max_jobs=max(1, len(document.get("jobs") or [])))
            except OpError as exc:  # a version this release no longer reads: the run cannot go on
                log.error("workflow %s: its stored version %d cannot be read (%s); marked failed", record.id, record.version, exc)
                reason = f"its document cannot be read after a restart: {exc.detail}"
                now = time.time()
                for row in await self.rows.run_jobs(record.id, record.run):
                    job = self._jobs.get(row.id)
                    if job is not None and job.state is JobState.WAITING:
                        self._jobs.end(job, JobState.CANCELED, f"workflow {reason}", now)
                record.state, record.reason = WorkflowState.FAILED, reason
                record.finished_at = record.updated_at = now
                self.rows.save(record)
                continue
            run = WorkflowRun(record, RunGraph(doc))
            graph = run.graph
            now = time.time()
            resumed: list[ComputeJob] = []
            for row in await self.rows.run_jobs(record.id, record.run):
                i = graph.index.get(row.workflow_job)
                if i is None:
                    continue
                again = await self._resume_interrupted(record, row, now)
                if again is not None:
                    resumed.append(again)
                live = self._jobs.get(row.id)
                graph.job_ids[i] = row.id
                graph.targets[i] = row.driver
                graph.set_state(i, live.state if live is not None else JobState(row.state))
                if i in graph.referenced and graph.state(i) is JobState.COMPLETED:
                    graph.results[row.workflow_job] = live.result if live is not None else row.result
            if INTERRUPTED in record.info:
                record.info = {k: v for k, v in record.info.items() if k != INTERRUPTED}
                self.rows.save(record)
            self._runs.runs[record.id] = run
            self._jobs.enqueue(resumed)
            self._resume(run, doc)

    async def _resume_interrupted(self, record: WorkflowRecord, row: Any, now: float) -> ComputeJob | None:
        """A job the last shutdown ended (see `RunBook.pause`), back in its queue as a new attempt."""
        if row.id not in record.info.get(INTERRUPTED, ()) or JobState(row.state) not in RESUMABLE:
            return None
        job = await self.store.get_job(row.id)
        if job is None:
            return None
        self.store.record(job, job.retry(f"queued again: {job.reason or JobState(row.state).value} when the supervisor stopped", now))
        self.store.restart_log(job.id)
        self._jobs.adopt(job)
        return job

    def _resume(self, run: WorkflowRun, doc: WorkflowDoc) -> None:
        graph = run.graph
        now = time.time()
        missing = [graph.names[i] for i in range(len(graph)) if graph.job_ids[i] is None]
        if missing:  # cannot happen (a run's jobs are committed with it); say so rather than wait forever
            log.error("workflow %s run %d: no job rows for %s", run.record.id, run.record.run, ", ".join(missing[:5]))
            for i in range(len(graph)):
                if graph.job_ids[i] is None:
                    graph.set_state(i, JobState.LOST)
        for i in doc.order:  # dependencies first: a cancel reaches its dependents' dependents
            if graph.state(i) is not JobState.WAITING:
                continue
            failed = graph.failed_dependency(i)
            if failed is not None and graph.on_failure is not OnFailure.CONTINUE:
                self._runs.cancel_dependents(run, failed, now)
            elif graph.ready(i):
                self._runs.release(run, [i], now)
        if graph.unfinished == 0:
            self._runs.finish(run, now)
        log.info("workflow %s (%s) run %d resumed: %s", run.record.id, run.record.name, run.record.run, graph.counts_by_state())
