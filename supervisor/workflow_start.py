"""A new run of a workflow: all its jobs made at once, in one commit with the workflow's row.

A run's jobs are ordinary `ComputeJob`s (in `JobBook` like any job, with `member` naming the
workflow, the job's name and the run): the roots `queued`, every other one `waiting` with a
reason naming what it waits for (one string for the jobs that wait for the same jobs). Making
them all at the start, rather than each at its release, lets every job route, the events and
a restart see the whole run from its first commit; a waiting job costs a `ComputeJob` and a few
array entries of the run's `RunGraph`. A failed commit leaves nothing behind: the run leaves
the `RunBook` again and the record goes back to `draft`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from jobvisor.errors import Conflict, OpError
from jobvisor.resources import Resources
from jobvisor.states import JobState, WorkflowState
from jobvisor.workflow_doc import WorkflowDoc
from supervisor.compute_job import ComputeJob, WorkflowMember
from supervisor.jobs import JobBook
from supervisor.store import Store
from supervisor.workflow_docs import MakeJob
from supervisor.workflow_graph import RunGraph
from supervisor.workflow_runs import RunBook, WorkflowRun
from supervisor.workflow_store import WorkflowRecord, WorkflowStore

log = logging.getLogger(__name__)

ROOT = "workflow started"
YIELD_EVERY = 2000  # jobs made between two yields to the loop, when a run starts


class RunStarter:
    def __init__(self, store: Store, rows: WorkflowStore, jobs: JobBook, runs: RunBook, make_job: MakeJob) -> None:
        self.store = store
        self.rows = rows
        self._jobs = jobs
        self._runs = runs
        self._make_job = make_job

    async def start(self, record: WorkflowRecord, doc: WorkflowDoc, reason: str,
                    placed: list[tuple[str, Resources]]) -> None:
        """Run `doc` (the record's current version, checked: `placed` is its jobs' targets) as
        the record's next run; committed when this returns, its roots in their queues."""
        runs = self._runs.runs
        if record.id in runs:
            raise Conflict(f"workflow {record.id} ({record.name}) is running already (run {record.run})")
        now = time.time()
        graph = RunGraph(doc)
        run_number = record.run + 1
        run = WorkflowRun(record, graph)
        jobs: list[ComputeJob] = []
        roots: list[ComputeJob] = []
        reasons: dict[tuple[int, ...], str] = {}  # one string for the jobs that wait for the same jobs
        workflow_id = record.id
        for i, wjob in enumerate(doc.jobs):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # nothing is recorded or adopted yet: others may run meanwhile
            root = graph.is_root(i)
            job = self._make_job(
                record.owner, wjob.spec, now, f"jobs[{i}].", member=WorkflowMember(workflow_id, graph.names[i], run_number),
                state=JobState.QUEUED if root else JobState.WAITING,
                reason=ROOT if root else graph.waiting_reason(i, reasons), placed=placed[i])
            job.name = graph.names[i]  # one string for the job, its member and the graph
            graph.job_ids[i] = job.id
            graph.targets[i] = job.driver
            jobs.append(job)
            if root:
                roots.append(job)
                graph.set_state(i, JobState.QUEUED)
        record.run = run_number
        record.state = WorkflowState.RUNNING
        record.reason = reason
        record.started_at = now
        record.finished_at = None
        record.updated_at = now
        record.info = {"jobs_total": len(doc.jobs)}
        self.store.insert(jobs)
        for job in jobs:
            self.store.record(job, job.initial_transition())
        self.rows.save(record)
        self.rows.emit(record, graph.counts_by_state())
        runs[workflow_id] = run
        try:
            await self.store.committed()
        except OpError:
            runs.pop(workflow_id, None)
            record.run -= 1
            record.state = WorkflowState.DRAFT
            raise
        for job in jobs:
            self._jobs.adopt(job)
        self._jobs.enqueue(roots)
        log.info("workflow %s (%s) run %d: %d jobs, %d queued", workflow_id, record.name, run_number, len(jobs), len(roots))
