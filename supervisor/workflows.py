"""The book of workflows: publish, execute, release, cancel, delete, restart, and the views.

A run's jobs are ordinary `ComputeJob`s (in `JobBook` like any job, with `member` naming the
workflow, the job's name and the run), all made at once when the run starts: the roots
`queued`, every other one `waiting` with a reason naming what it waits for. What the run
needs beside them is its `RunGraph` (flat arrays; see supervisor.workflow_graph).

Release. `JobBook.end` calls `on_end` for every job that reaches a terminal state, on every
path (an agent's report, a cancel, a lost attempt with no retry left, a failure before the
run). Synchronously, before the batch that holds that end can be committed, each dependent
whose dependencies have all completed moves `waiting -> queued` (its `$ref`s resolved), so a
dependency's end and its dependents' release are one commit: a crash keeps both or neither.
With on_failure `cancel_dependents`, a job that ended without completing cancels every job
that waits on it, directly or not ("dependency NAME failed"); with `continue` they run anyway.
The workflow's own row moves in the same commit as the job change that decides it.

Restart. `restore` rebuilds each running workflow's graph from its stored version and its
jobs' rows (their member columns), then finishes what the crash interrupted: a waiting job
whose dependencies all completed is released, one behind a failed dependency is canceled.
Only `waiting` jobs are ever released, and a release is committed with the job's row, so no
job is released twice (a released job reads back `queued`, and the rest of its life is the
recovery of any queued job).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobvisor.code_params import check_params
from jobvisor.config import WorkflowsConfig
from jobvisor.errors import Conflict, InvalidRequest, NotFound, OpError
from jobvisor.ids import UserId, new_workflow_id
from jobvisor.isotime import iso
from jobvisor.limits import MAX_PAGE
from jobvisor.protocol import Caller, EventKind, InputFile, JobSpec
from jobvisor.resources import Resources
from jobvisor.states import JobState, WorkflowState
from jobvisor.tasks import Tasks
from jobvisor.workflow_doc import OnFailure, RefError, WorkflowDoc, parse_workflow, resolve_refs
from supervisor.compute_job import ComputeJob, WorkflowMember
from supervisor.jobs import JobBook
from supervisor.store import Store
from supervisor.workflow_graph import RunGraph
from supervisor.inputs import LINKED_INPUTS, linked_inputs
from supervisor.workflow_inputs import InputError, WorkflowInputs, shares_files
from supervisor.workflow_store import VersionRecord, WorkflowRecord, WorkflowStore, canonical_json, sha256_of

log = logging.getLogger(__name__)

RELEASED = "dependencies completed"
RELEASED_ANYWAY = "dependencies ended (on_failure: continue)"
ROOT = "workflow started"
INLINE_PARSE_JOBS = 1000  # a larger document is parsed in a thread
YIELD_EVERY = 2000  # jobs made between two yields to the loop, when a run starts
# how a dependency ended, in its dependents' reason ("dependency prep timed out")
ENDED_AS = {JobState.FAILED: "failed", JobState.TIMED_OUT: "timed out", JobState.LOST: "was lost",
            JobState.CANCELED: "was canceled"}
INTERRUPTED = "interrupted"  # the workflow row's info: jobs the last shutdown ended, to run again
RESUMABLE = frozenset({JobState.CANCELED, JobState.LOST})

# (spec, where) -> (target, resources), checked against the drivers (supervisor.core.place)
Place = Callable[[JobSpec, str], tuple[str, Resources]]
# (user, spec, now, where, member=, state=, reason=, placed=) -> a new ComputeJob (supervisor.core.make_job)
MakeJob = Callable[..., ComputeJob]


def _resources_key(resources: dict) -> Any:
    """`resources` as a dict key: the jobs of a document mostly share a few of them."""
    try:
        key = tuple(sorted(resources.items()))
        hash(key)
        return key
    except TypeError:
        return json.dumps(resources, sort_keys=True, default=str)


def emit_workflow(store: Store, record: WorkflowRecord, counts: dict[str, int]) -> None:
    """A `workflow` event for the record's state, with counts (committed with the change)."""
    store.emit(EventKind.WORKFLOW, record.owner,
               {"id": record.id, "name": record.name, "state": record.state.value, "version": record.version,
                "run": record.run, "reason": record.reason, "counts": counts}, workflow_id=record.id)


@dataclass(slots=True)
class WorkflowRun:
    record: WorkflowRecord
    graph: RunGraph
    canceling: str | None = None  # the workflow was canceled: no job is released, the end is `canceled`
    finished: bool = False


class WorkflowBook:
    def __init__(self, cfg: WorkflowsConfig, store: Store, jobs: JobBook, place: Place, make_job: MakeJob,
                 cancel_job: Callable[[ComputeJob, str], None], inputs: WorkflowInputs) -> None:
        self.cfg = cfg
        self.store = store
        self.rows = WorkflowStore(store)
        self._jobs = jobs
        self._place = place
        self._make_job = make_job
        self._cancel_job = cancel_job
        self.runs: dict[str, WorkflowRun] = {}  # running workflows by id
        self.inputs = inputs
        self._tasks = Tasks(log, "workflow inputs")
        self.pausing = False  # the supervisor is stopping: ends do not cascade, they resume after the restart
        self._lock = asyncio.Lock()  # one publish, execute, cancel or delete at a time
        jobs.on_end = self.on_end

    # ================================================================== documents

    def check(self, doc: WorkflowDoc) -> list[tuple[str, Resources]]:
        """What needs the server's configuration: every job runnable by a configured driver
        (resources, cluster), and every input able to reach its job. InvalidRequest naming
        `jobs[i]...` otherwise. Returns each job's (target, resources); jobs that ask for the
        same are checked once (a document of 10,000 jobs has a handful of kinds)."""
        seen: dict[tuple, tuple[str, Resources]] = {}
        placed = []
        for i, job in enumerate(doc.jobs):
            spec = job.spec
            key = (spec.code, spec.driver, spec.max_retries, _resources_key(spec.resources))
            where = seen.get(key)
            if where is None:
                where = seen[key] = self._place(spec, f"jobs[{i}].")
            placed.append(where)
            if spec.env or spec.workdir:  # checked where the job is made: made once here, for its errors
                self._make_job(UserId(""), spec, 0.0, f"jobs[{i}].", placed=where)
        index = doc.index() if any(job.inputs for job in doc.jobs) else {}
        for i, job in enumerate(doc.jobs):
            for k, item in enumerate(job.inputs):
                producer = placed[index[item.job]][0]
                consumer = placed[i][0]
                if not shares_files(producer, consumer) and self.cfg.max_transfer <= 0:
                    raise InvalidRequest(
                        f"{item.path!r} of {item.job} ({producer}) cannot reach {job.name} ({consumer}): "
                        "the two drivers share no file system and [workflows] max_transfer is 0",
                        field=f"jobs[{i}].inputs[{k}]")
        return placed

    async def parse(self, document: Any, max_jobs: int | None = None) -> WorkflowDoc:
        """The document checked and parsed; a large one in a thread (pure work on plain data), so
        the loop goes on serving agents and requests meanwhile."""
        jobs = document.get("jobs") if isinstance(document, dict) else None
        limit = self.cfg.max_jobs if max_jobs is None else max_jobs
        if isinstance(jobs, list) and len(jobs) > INLINE_PARSE_JOBS:
            return await asyncio.to_thread(parse_workflow, document, max_jobs=limit)
        return parse_workflow(document, max_jobs=limit)

    # ================================================================== publish

    async def publish(self, caller: Caller, document: dict, message: str, execute: bool) -> dict:
        owner = UserId(caller.user)
        doc = await self.parse(document)
        placed = self.check(doc)
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
                if record.id in self.runs:
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
            emit_workflow(self.store, record, {})
            await self.store.committed()
            if execute:
                await self._execute(record, doc, "published with execute", placed)
        return self.view(record)

    # ================================================================== execute

    async def execute(self, owner: UserId, workflow_id: str, reason: str) -> dict:
        """Start a new run of the workflow's current version (timers call this too)."""
        return await self.execute_as(Caller(user=owner), workflow_id, reason)

    async def execute_as(self, caller: Caller, workflow_id: str, reason: str = "executed") -> dict:
        async with self._lock:
            record = await self._owned(caller, workflow_id)
            doc = await self.parse(await self.rows.document(record.id, record.version))
            await self._execute(record, doc, reason, self.check(doc))
            return self.view(record)

    async def _execute(self, record: WorkflowRecord, doc: WorkflowDoc, reason: str,
                       placed: list[tuple[str, Resources]]) -> None:
        if record.id in self.runs:
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
        emit_workflow(self.store, record, graph.counts_by_state())
        self.runs[workflow_id] = run
        try:
            await self.store.committed()
        except OpError:
            self.runs.pop(workflow_id, None)
            record.run -= 1
            record.state = WorkflowState.DRAFT
            raise
        for job in jobs:
            self._jobs.adopt(job)
        self._jobs.enqueue(roots)
        log.info("workflow %s (%s) run %d: %d jobs, %d queued", workflow_id, record.name, run_number, len(jobs), len(roots))

    # ================================================================== ends and releases

    def on_end(self, job: ComputeJob, now: float) -> None:
        """JobBook: `job` reached a terminal state (recorded, not yet committed)."""
        member = job.member
        if type(member) is not WorkflowMember:
            return
        run = self.runs.get(member.workflow_id)
        if run is None or run.record.run != member.run:
            return
        if self.pausing and job.state is not JobState.COMPLETED and run.canceling is None:
            self._interrupted(run, job)
            return
        graph = run.graph
        i = graph.index[member.name]
        if not graph.set_state(i, job.state):
            return  # already counted (canceled as a dependent, before its own end was recorded)
        if job.state is JobState.COMPLETED and i in graph.referenced:
            graph.results[member.name] = job.result
        if run.canceling is None:
            if job.state is JobState.COMPLETED or graph.on_failure is OnFailure.CONTINUE:
                self._release(run, graph.dependents_of(i), now)
            else:
                self._cancel_dependents(run, i, now)
        if graph.unfinished == 0:
            self._finish(run, now)

    def _release(self, run: WorkflowRun, candidates: Any, now: float) -> None:
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

    def _cancel_dependents(self, run: WorkflowRun, i: int, now: float) -> None:
        graph = run.graph
        reason = f"dependency {graph.names[i]} {ENDED_AS.get(graph.state(i), 'failed')}"
        doomed = list(graph.waiting_dependents(i))
        for d in doomed:  # counted first: their own ends (below) then change nothing here
            graph.set_state(d, JobState.CANCELED)
        for d in doomed:
            job = self._jobs.get(graph.job_ids[d])  # type: ignore[arg-type]
            if job is not None and not job.state.is_terminal:
                self._jobs.end(job, JobState.CANCELED, reason, now)

    def _finish(self, run: WorkflowRun, now: float) -> None:
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
        emit_workflow(self.store, record, counts)
        self.runs.pop(record.id, None)
        log.info("workflow %s (%s) run %d %s: %s", record.id, record.name, record.run, record.state, record.reason)

    # ================================================================== cancel, delete

    async def cancel(self, caller: Caller, workflow_id: str) -> dict:
        async with self._lock:
            record = await self._owned(caller, workflow_id)
            run = self.runs.get(record.id)
            if run is not None:
                self._cancel_run(run, "canceled by user" if caller.user == record.owner else f"canceled by {caller.user}")
            await self.store.committed()
            return self.view(run.record if run is not None else record)

    def _cancel_run(self, run: WorkflowRun, reason: str) -> None:
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
            self._finish(run, now)

    async def delete(self, caller: Caller, workflow_id: str, force: bool) -> dict:
        async with self._lock:
            record = await self._owned(caller, workflow_id)
            run = self.runs.get(record.id)
            if run is not None:
                if not force:
                    raise Conflict(f"workflow {record.id} ({record.name}) is running; cancel it first, or delete with force=true")
                self._cancel_run(run, "canceled: the workflow was deleted")
                self.runs.pop(record.id, None)  # its jobs end as jobs; there is no workflow left to end
            self.rows.delete(record.id)
            self.store.emit(EventKind.WORKFLOW, record.owner, {"id": record.id, "name": record.name, "deleted": True},
                            workflow_id=record.id)
            await self.store.committed()
            return {"id": record.id, "deleted": True}

    def pause(self) -> None:
        """The supervisor is stopping (SIGTERM, admin shutdown): the jobs its agents cancel on
        the way out, or that end `lost` with the shutdown, are not failures of their
        workflows. Each is noted in its workflow's row and starts a new attempt after the
        restart, so a workflow goes on across a planned restart as across a crash."""
        self.pausing = True

    def _interrupted(self, run: WorkflowRun, job: ComputeJob) -> None:
        record = run.record
        noted = record.info.get(INTERRUPTED, [])
        if job.id not in noted:
            record.info = {**record.info, INTERRUPTED: [*noted, job.id]}
            self.rows.save(record)

    async def _resume_interrupted(self, record: WorkflowRecord, row: Any, now: float) -> ComputeJob | None:
        """A job the last shutdown ended (see `pause`), back in its queue as a new attempt."""
        if row.id not in record.info.get(INTERRUPTED, ()) or JobState(row.state) not in RESUMABLE:
            return None
        job = await self.store.get_job(row.id)
        if job is None:
            return None
        self.store.record(job, job.retry(f"queued again: {job.reason or JobState(row.state).value} when the supervisor stopped", now))
        self.store.restart_log(job.id)
        self._jobs.adopt(job)
        return job

    def close(self) -> None:
        """Shutdown: inputs still being fetched are dropped (their jobs stay waiting, and are
        released again after a restart)."""
        self._tasks.cancel_all()

    # ================================================================== restart

    async def restore(self) -> None:
        """After `Recovery.restore` adopted the unfinished jobs: rebuild every running
        workflow's run and finish what the crash interrupted (see the module's docstring)."""
        for record in await self.rows.running():
            document = await self.rows.document(record.id, record.version)
            try:  # the limit on jobs was checked when it was published
                doc = await self.parse(document, max_jobs=max(1, len(document.get("jobs") or [])))
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
            self.runs[record.id] = run
            self._jobs.enqueue(resumed)
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
                self._cancel_dependents(run, failed, now)
            elif graph.ready(i):
                self._release(run, [i], now)
        if graph.unfinished == 0:
            self._finish(run, now)
        log.info("workflow %s (%s) run %d resumed: %s", run.record.id, run.record.name, run.record.run, graph.counts_by_state())

    # ================================================================== views

    async def _owned(self, caller: Caller, workflow_id: str) -> WorkflowRecord:
        run = self.runs.get(workflow_id)
        record = run.record if run is not None else None
        if record is None:
            await self.store.committed()
            record = await self.rows.get(workflow_id)
        if record is None or (record.owner != caller.user and not caller.is_admin):
            raise NotFound(f"no workflow {workflow_id!r}")
        return record

    def _counts(self, record: WorkflowRecord) -> dict[str, int]:
        run = self.runs.get(record.id)
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
        run = self.runs.get(record.id)
        return run.record if run is not None else record

    async def _run_jobs(self, record: WorkflowRecord) -> list[dict]:
        """The current run's jobs: a job still in the book as it is there, the others as
        committed. The book is looked at before the read: a job that leaves it (its end
        committed) after that look is still shown from the book, never from a row read
        before its end was committed."""
        if record.run == 0:
            return []
        live: dict[str, ComputeJob] = {}
        run = self.runs.get(record.id)
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
        record = await self._owned(caller, workflow_id)
        document = await self.rows.document(record.id, record.version)
        # the jobs' states and the workflow's are taken at one moment: no await after the jobs are read
        jobs = await self._run_jobs(record)
        if not jobs:  # never run: the document's jobs, not run yet
            jobs = [{"name": job.get("name", ""), "job_id": None, "state": None, "reason": "", "exit_code": None,
                     "progress": None, "started_at": None, "finished_at": None} for job in document.get("jobs", [])]
        return {**self.view(self._current(record)), "document": document, "jobs": jobs}

    async def status(self, caller: Caller, workflow_id: str) -> dict:
        record = self._current(await self._owned(caller, workflow_id))
        jobs = [{"name": j["name"], "job_id": j["job_id"], "state": j["state"]} for j in await self._run_jobs(record)]
        return {"id": record.id, "name": record.name, "run": record.run, "state": record.state.value,
                "counts": self._counts(record), "jobs": jobs, "started_at": iso(record.started_at),
                "finished_at": iso(record.finished_at)}

    async def history(self, caller: Caller, workflow_id: str) -> dict:
        record = await self._owned(caller, workflow_id)
        return {"versions": [
            {"id": v.id, "version": v.version, "author": v.author, "message": v.message,
             "created_at": iso(v.created_at), "sha256": v.sha256}
            for v in await self.rows.versions(record.id)
        ]}

