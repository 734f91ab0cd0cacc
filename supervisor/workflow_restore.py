"""The running workflows put back after a restart, planned (a shutdown) or not (a crash).

`Recovery.restore` has adopted the unfinished jobs by then (waiting ones go to no queue); here
each running workflow's graph is rebuilt from its stored version and its jobs' rows (their
member columns), and what the stop interrupted is finished: a waiting job whose dependencies
all completed is released, one behind a failed dependency is canceled. Only `waiting` jobs are
ever released, and a release is committed with the job's row, so no job is released twice (a
released job reads back `queued`, and the rest of its life is the recovery of any queued job).

A planned stop needs nothing of its own here: the runs it stopped were committed `queued` again
as their jobs' next attempts (`JobBook.interrupt`), so they read back as queued jobs of the run.
"""

from __future__ import annotations

import logging
import time

from jobvisor.errors import OpError
from jobvisor.states import JobState, WorkflowState
from jobvisor.workflow_doc import OnFailure, WorkflowDoc
from supervisor.jobs import JobBook
from supervisor.workflow_docs import WorkflowDocs
from supervisor.workflow_graph import RunGraph
from supervisor.workflow_runs import RunBook, WorkflowRun
from supervisor.workflow_store import WorkflowStore

log = logging.getLogger(__name__)


class WorkflowRestore:
    def __init__(self, rows: WorkflowStore, jobs: JobBook, runs: RunBook, docs: WorkflowDocs) -> None:
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
            for row in await self.rows.run_jobs(record.id, record.run):
                i = graph.index.get(row.workflow_job)
                if i is None:
                    continue
                live = self._jobs.get(row.id)
                graph.job_ids[i] = row.id
                graph.targets[i] = row.driver
                graph.set_state(i, live.state if live is not None else JobState(row.state))
                if i in graph.referenced and graph.state(i) is JobState.COMPLETED:
                    graph.results[row.workflow_job] = live.result if live is not None else row.result
            self._runs.runs[record.id] = run
            self._resume(run, doc)

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
