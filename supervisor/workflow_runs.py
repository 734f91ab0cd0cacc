"""The running workflows, and what a job's end does to its run: the release of dependents.

This is the hot path of workflows: `JobBook.end` calls `on_end` for every job that reaches a
terminal state, on every path (an agent's report, a cancel, a lost attempt with no retry
left, a failure before the run). Synchronously, before the batch that holds that end can be
committed, each dependent whose dependencies have all completed moves `waiting -> queued`
(its `$ref`s resolved), so a dependency's end and its dependents' release are one commit: a
crash keeps both or neither. With on_failure `cancel_dependents`, a job that ended without
completing cancels every job that waits on it, directly or not ("dependency NAME failed");
with `continue` they run anyway. The workflow's own row moves in the same commit as the job
change that decides it.

Only the moves a run makes once it exists live here; making a run is
supervisor.workflow_start, putting one back after a restart supervisor.workflow_restore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobvisor.code_params import check_params
from jobvisor.errors import InvalidRequest
from jobvisor.protocol.agent_wire import InputFile
from jobvisor.states import JobState, WorkflowState
from jobvisor.tasks import Tasks
from jobvisor.workflow_doc import OnFailure, RefError, resolve_refs
from supervisor.compute_job import ComputeJob, WorkflowMember
from supervisor.inputs import LINKED_INPUTS, linked_inputs
from supervisor.jobs import JobBook
from supervisor.store import Store
from supervisor.workflow_graph import RunGraph
from supervisor.workflow_inputs import InputError, WorkflowInputs
from supervisor.workflow_store import WorkflowRecord, WorkflowStore

log = logging.getLogger(__name__)

RELEASED = "dependencies completed"
RELEASED_ANYWAY = "dependencies ended (on_failure: continue)"
# how a dependency ended, in its dependents' reason ("dependency prep timed out")
ENDED_AS = {JobState.FAILED: "failed", JobState.TIMED_OUT: "timed out", JobState.LOST: "was lost",
            JobState.CANCELED: "was canceled"}


@dataclass(slots=True)
class WorkflowRun:
    """One run in progress: its row (kept in memory while it runs, saved at each change) and
    its graph."""

    record: WorkflowRecord
    graph: RunGraph
    canceling: str | None = None  # the workflow was canceled: no job is released, the end is `canceled`
    finished: bool = False


class RunBook:
    """The running workflows by id. Every move here is synchronous (no await between a job's
    end and its dependents' release), except the fetch of a dependent's input files, which
    releases that one dependent in a commit of its own once its files are here."""

    def __init__(self, store: Store, rows: WorkflowStore, jobs: JobBook,
                 cancel_job: Callable[[ComputeJob, str], None], inputs: WorkflowInputs) -> None:
        self.store = store
        self.rows = rows
        self._jobs = jobs
        self._cancel_job = cancel_job
        self.inputs = inputs
        self.runs: dict[str, WorkflowRun] = {}  # running workflows by id
        self._tasks = Tasks(log, "workflow inputs")
        jobs.on_end = self.on_end

    # ================================================================== a job's end

    def on_end(self, job: ComputeJob, now: float) -> None:
        """JobBook: `job` reached a terminal state (recorded, not yet committed)."""
        member = job.member
        if type(member) is not WorkflowMember:
            return
        run = self.runs.get(member.workflow_id)
        if run is None or run.record.run != member.run:
            return
        graph = run.graph
        i = graph.index[member.name]
        if not graph.set_state(i, job.state):
            return  # already counted (canceled as a dependent, before its own end was recorded)
        if job.state is JobState.COMPLETED and i in graph.referenced:
            graph.results[member.name] = job.result
        if run.canceling is None:
            if job.state is JobState.COMPLETED or graph.on_failure is OnFailure.CONTINUE:
                self.release(run, graph.dependents_of(i), now)
            else:
                self.cancel_dependents(run, i, now)
        if graph.unfinished == 0:
            self.finish(run, now)

    def release(self, run: WorkflowRun, candidates: Any, now: float) -> None:
        """Each of `candidates` (indexes) whose dependencies are all done and that still waits
        moves to `queued`, its `$ref`s resolved and its input files planned; one whose files
        must travel through the supervisor stays `waiting` until they are here."""
        graph = run.graph
        released = []
        reason = RELEASED if graph.on_failure is not OnFailure.CONTINUE else RELEASED_ANYWAY
        for d in candidates:
            if not graph.ready(d):
                continue
            job = self._jobs.get(graph.job_ids[d])  # type: ignore[arg-type]
            if job is None or job.state is not JobState.WAITING:
                continue
            if graph.has_refs[d]:
                params, resources, extra = job.unpack_all()
                try:
                    params = resolve_refs(params, graph.results)
                    check_params(job.code, params)  # checked at publish with the refs standing in
                except RefError as exc:  # its end (on_end) cancels what waits on it
                    self._jobs.end(job, JobState.FAILED, str(exc), now)
                    continue
                except InvalidRequest as exc:
                    self._jobs.end(job, JobState.FAILED, f"{exc.field}: {exc.detail}" if exc.field else exc.detail, now)
                    continue
                job.spec = ComputeJob.pack_spec(params, resources, extra)
                self.rows.set_spec(job.id, job.spec)
            if d in graph.inputs:
                try:
                    by_path, to_fetch = self.inputs.plan(graph, d, run.record.owner)
                except InputError as exc:
                    self._jobs.end(job, JobState.FAILED, str(exc), now)
                    continue
                if by_path:  # in its spec, so that a resubmit of it places the same files
                    params, resources, extra = job.unpack_all()
                    job.spec = ComputeJob.pack_spec(params, resources, {**extra, LINKED_INPUTS: linked_inputs(by_path)})
                    self.rows.set_spec(job.id, job.spec)
                if to_fetch:  # released once its files are here (a commit of its own)
                    job.reason = "fetching inputs: " + ", ".join(f"{ref.path} of {ref.job}" for ref, _ in to_fetch)
                    job.updated_at = now
                    self.store.record(job)
                    self._tasks.spawn(self._fetch_then_release(run, d, job, to_fetch))
                    continue
            self.store.record(job, job.move(JobState.QUEUED, reason, now))
            graph.set_state(d, JobState.QUEUED)
            released.append(job)
        if released:
            self._jobs.enqueue(released)

    async def _fetch_then_release(self, run: WorkflowRun, d: int, job: ComputeJob, to_fetch: list) -> None:
        graph = run.graph
        try:  # into the state dir, as uploaded inputs are: they survive a restart and go when the job ends
            fetched = [await self.inputs.fetch(graph, run.record.owner, ref, p, job.id) for ref, p in to_fetch]
        except InputError as exc:
            if job.state is JobState.WAITING:
                self._jobs.end(job, JobState.FAILED, str(exc), time.time())
            return
        if job.state is not JobState.WAITING or self.runs.get(run.record.id) is not run or run.canceling is not None:
            return  # canceled meanwhile
        params, resources, extra = job.unpack_all()
        listing = sorted([*(extra.get("inputs") or []), *fetched])
        job.spec = ComputeJob.pack_spec(params, resources, {**extra, "inputs": listing})
        self.rows.set_spec(job.id, job.spec)
        self.store.record(job, job.move(JobState.QUEUED, RELEASED, time.time()))
        graph.set_state(d, JobState.QUEUED)
        self._jobs.enqueue([job])

    def inputs_of(self, job: ComputeJob) -> list[InputFile]:
        """The Dispatcher: what `job`'s run carries to place in its run dir (none for most),
        for a job released before its spec kept them (`LINKED_INPUTS`)."""
        member = job.member
        if type(member) is not WorkflowMember:
            return []
        run = self.runs.get(member.workflow_id)
        if run is None or run.record.run != member.run:
            return []
        i = run.graph.index.get(member.name)
        if i is None or i not in run.graph.inputs:
            return []
        try:
            by_path = self.inputs.plan(run.graph, i, run.record.owner)[0]
        except InputError:
            by_path = []
        return by_path  # fetched ones are in its spec's inputs, sent as uploaded inputs are

    def cancel_dependents(self, run: WorkflowRun, i: int, now: float) -> None:
        """Every job that waits on job `i` (which ended without completing), directly or not,
        canceled with a reason naming `i`."""
        graph = run.graph
        reason = f"dependency {graph.names[i]} {ENDED_AS.get(graph.state(i), 'failed')}"
        doomed = list(graph.waiting_dependents(i))
        for d in doomed:  # counted first: their own ends (below) then change nothing here
            graph.set_state(d, JobState.CANCELED)
        for d in doomed:
            job = self._jobs.get(graph.job_ids[d])  # type: ignore[arg-type]
            if job is not None and not job.state.is_terminal:
                self._jobs.end(job, JobState.CANCELED, reason, now)

    def finish(self, run: WorkflowRun, now: float) -> None:
        """The run's last job ended: the workflow's end decided, saved and announced, in the
        commit of that job's end."""
        if run.finished:
            return
        run.finished = True
        record, graph = run.record, run.graph
        counts = graph.counts_by_state()
        completed = counts.get(JobState.COMPLETED.value, 0)
        if run.canceling is not None:
            record.state, record.reason = WorkflowState.CANCELED, run.canceling
        elif completed == len(graph):
            record.state, record.reason = WorkflowState.COMPLETED, f"all {completed} jobs completed"
        else:
            first = next(graph.names[i] for i in range(len(graph)) if graph.state(i) is not JobState.COMPLETED)
            canceled = counts.get(JobState.CANCELED.value, 0)
            if completed + canceled == len(graph):  # nothing failed: canceled from outside (a job, the queue, an admin)
                record.state = WorkflowState.CANCELED
                record.reason = f"{canceled} of {len(graph)} jobs were canceled (first: {first})"
            else:
                record.state = WorkflowState.FAILED
                record.reason = f"{len(graph) - completed} of {len(graph)} jobs did not complete (first: {first})"
        record.finished_at = record.updated_at = now
        record.info = {**record.info, "counts": counts}
        self.rows.save(record)
        self.rows.emit(record, counts)
        self.runs.pop(record.id, None)
        log.info("workflow %s (%s) run %d %s: %s", record.id, record.name, record.run, record.state, record.reason)

    # ================================================================== cancel

    def cancel_run(self, run: WorkflowRun, reason: str) -> None:
        """Every unfinished job canceled; the workflow ends `canceled` with the last of them."""
        if run.canceling is not None:
            return
        run.canceling = reason
        graph = run.graph
        now = time.time()
        for i, job_id in enumerate(graph.job_ids):
            if graph.is_finished(i) or job_id is None:
                continue
            job = self._jobs.get(job_id)
            if job is not None:
                self._cancel_job(job, f"workflow {reason}")
        if graph.unfinished == 0:
            self.finish(run, now)

    def close(self) -> None:
        """Shutdown: inputs still being fetched are dropped (their jobs stay waiting, and are
        released again after a restart)."""
        self._tasks.cancel_all()
