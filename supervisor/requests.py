"""Gateway requests, answered by the supervisor core.

Each handler takes one decoded `GatewayRequest` and returns the reply's data or raises an
`OpError`. Ownership is re-checked here (the gateway checked too): another user's job is
`NotFound`, exactly like a job that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any, Awaitable, Callable

from jobvisor import __version__
from jobvisor.job_arrays import format_array
from jobvisor.errors import Conflict, DriverError, ErrorKind, InvalidRequest, NotFound, OpError, Unavailable
from jobvisor.limits import IO_CHUNK_BYTES, LOG_READ_BYTES, MAX_PAGE, MAX_USER_EVENT_BYTES
from jobvisor.wire_values import check_wire_value
from jobvisor.ids import JobId, UserId
from jobvisor.isotime import iso
from jobvisor.codec import Message
from jobvisor.protocol.agent_wire import AnalysisRequest, IoAction, IoRequest
from jobvisor.protocol.common import PROTOCOL_VERSION, Caller, Reply, WireError
from jobvisor.protocol.events import EventKind, ListEvents, PushEvent
from jobvisor.protocol.job_requests import (
    CancelJobRequest, GetJob, ListFiles, ListJobs, ReadFile, ReadLog, ResubmitJob, RunAnalysis, SubmitJobs,
    UploadInput,
)
from jobvisor.protocol.system_requests import ClusterLogin, ClusterLogout, GetAgents, GetQueue, GetStatus, ListClusters
from jobvisor.protocol.workflow_requests import (
    CancelWorkflow, DeleteWorkflow, ExecuteWorkflow, GetWorkflow, ListWorkflows, PublishWorkflow, WorkflowHistory,
    WorkflowStatus,
)
from drivers.base import DriverBase, Logins, kind_serving, target_name
from jobvisor.states import JobState
from supervisor.compute_job import ArrayMember, ComputeJob
from supervisor.core import Supervisor
from supervisor.targets import DEFAULT_DRIVER
from supervisor.orchestrator import OrchestratorHandlers
from supervisor.submit import resubmit_spec

log = logging.getLogger(__name__)

MAX_LOG_WAIT = 30.0
ID_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what a job id is made of (store.ID_PREFIX_END relies on it)
TAIL_WAIT = 10.0  # seconds a read of an ended job's log waits for the rest of it (each read)


def array_view(jobs: list[ComputeJob]) -> dict:
    """What submitting a job array answers: the array and its jobs' ids in index order (each
    job's own view is a GET away; 100,000 of them would make a reply of 50 MB)."""
    first = jobs[0]
    member = first.member
    assert isinstance(member, ArrayMember)
    return {
        "array_id": member.array_id, "count": len(jobs),
        "array": format_array([j.member.index for j in jobs], member.cap),  # type: ignore[union-attr]
        "cap": member.cap or None, "owner": first.owner, "state": str(first.state),
        "created_at": iso(first.created_at), "job_ids": [j.id for j in jobs],
    }


class RequestHandlers:
    def __init__(self, core: Supervisor) -> None:
        self.core = core
        self.table: dict[type, Callable[[Any], Awaitable[Any]]] = {
            SubmitJobs: self.submit, ResubmitJob: self.resubmit, UploadInput: self.upload_input, ListJobs: self.list_jobs,
            GetJob: self.get_job,
            CancelJobRequest: self.cancel, ReadLog: self.read_log, ListFiles: self.list_files,
            ReadFile: self.read_file, RunAnalysis: self.analysis, GetQueue: self.queue,
            GetAgents: self.agents, GetStatus: self.status,
            ClusterLogin: self.cluster_login, ClusterLogout: self.cluster_logout, ListClusters: self.list_clusters,
            PublishWorkflow: self.publish_workflow, ListWorkflows: self.list_workflows, GetWorkflow: self.get_workflow,
            ExecuteWorkflow: self.execute_workflow, CancelWorkflow: self.cancel_workflow,
            WorkflowStatus: self.workflow_status, WorkflowHistory: self.workflow_history,
            DeleteWorkflow: self.delete_workflow,
            ListEvents: self.list_events, PushEvent: self.push_event,
        }
        self.table.update(OrchestratorHandlers(core).table)

    async def handle(self, request: Message) -> Any:
        return await self.table[type(request)](request)

    async def answer(self, request: Message) -> Reply:
        """The request's Reply: its data, or the error as the wire carries it."""
        try:
            return Reply(ok=True, data=await self.handle(request))
        except OpError as exc:
            return Reply(ok=False, error=WireError.of(exc))
        except Exception:
            log.exception("internal error answering a %s request", request.TYPE)
            return Reply(ok=False, error=WireError(ErrorKind.INTERNAL, "internal error in the supervisor; see its log"))

    # ------------------------------------------------------------------ helpers

    async def _job(self, caller: Caller, job_id: JobId) -> ComputeJob:
        if job_id in self.core.jobs:
            # what we answer must be committed: a reader never sees a state a crash could undo
            await self.core.store.committed()
        job = self.core.jobs.get(job_id) or await self.core.store.get_job(job_id)
        if job is None or (job.owner != caller.user and not caller.is_admin):
            raise NotFound(f"no job {job_id!r}")
        return job

    def _view(self, job: ComputeJob, positions: dict | None = None) -> dict:
        live = (self.core.jobs.get(job.id) or job)
        if positions is not None:
            return live.to_dict(positions.get(live.id))
        return live.to_dict(self.core.queue_position(live))

    def _positions(self, jobs: list[ComputeJob]) -> dict[JobId, int]:
        """The queue positions of those of `jobs` that are queued: the cost follows the jobs
        asked about, not the length of the queue."""
        wanted: dict[tuple[str, UserId], list[JobId]] = {}
        for job in jobs:
            if job.state is JobState.QUEUED:
                wanted.setdefault((job.driver, job.owner), []).append(job.id)
        positions: dict[JobId, int] = {}
        for (kind, owner), ids in wanted.items():
            queue = self.core.queues.get(kind)
            if queue is not None:
                positions.update(queue.positions_of(owner, ids))
        return positions

    # ------------------------------------------------------------------ jobs

    async def submit(self, req: SubmitJobs) -> dict:
        if not req.jobs:
            raise InvalidRequest("no jobs to submit", field="jobs")
        jobs = await self.core.submit(UserId(req.caller.user), req.jobs, upload_id=req.upload_id)
        if len(req.jobs) == 1 and req.jobs[0].array:
            return {"array": array_view(jobs)}
        positions = self._positions(jobs)
        return {"jobs": [j.to_dict(positions.get(j.id) if j.state is JobState.QUEUED else None) for j in jobs]}

    async def upload_input(self, req: UploadInput) -> dict:
        size = await self.core.inputs.append(UserId(req.caller.user), req.upload_id, req.path, req.offset, req.data)
        return {"size": size}

    async def resubmit(self, req: ResubmitJob) -> dict:
        """A new job from the caller's job `job_id` (an admin may resubmit anyone's: the new
        job is the admin's own), with the inputs it ran with, linked (a Conflict when they
        were pruned). Its reason names the job it came from."""
        old = await self._job(req.caller, req.job_id)
        (job,) = await self.core.submit(UserId(req.caller.user), [resubmit_spec(old, req.params)],
                                        reason=f"resubmitted from {old.id}", inputs_of=old)
        return job.to_dict(self._positions([job]).get(job.id))

    async def list_jobs(self, req: ListJobs) -> dict:
        for state in req.states:
            if state not in JobState._value2member_map_:
                raise InvalidRequest(f"unknown state {state!r}", field="state")
        if req.id_prefix and not ID_PREFIX.match(req.id_prefix):
            raise InvalidRequest("id_prefix holds characters no job id has", field="id_prefix")
        limit = max(1, min(req.limit, MAX_PAGE))
        owner = None if req.caller.is_admin else req.caller.user
        await self.core.store.committed()
        jobs = await self.core.store.list_jobs(
            owner, list(req.states), limit + 1, req.after, name=req.name, id_prefix=req.id_prefix, array_id=req.array_id
        )
        more = len(jobs) > limit
        jobs = jobs[:limit]
        positions = self._positions([(self.core.jobs.get(j.id) or j) for j in jobs])
        views = [self._view(j, positions) for j in jobs]
        if any(j.id in self.core.jobs for j in jobs):
            await self.core.store.committed()  # a live job may have moved since the first wait
        return {"jobs": views, "next": jobs[-1].id if more else None}

    async def get_job(self, req: GetJob) -> dict:
        job = await self._job(req.caller, req.job_id)
        view = self._view(job)
        if job.id in self.core.jobs:
            # Its live state may have moved on while `_job` waited (a short job's start and end
            # come in one report): the view answered is durable, and its history reaches it.
            await self.core.store.committed()
        view["history"] = [{**t, "at": iso(t["at"])} for t in await self.core.store.transitions_of(job.id)]
        return view

    async def cancel(self, req: CancelJobRequest) -> dict:
        """A job still queued or running is canceled (a second cancel while it stops changes
        nothing); one that has ended is a conflict that names its state, as the API says."""
        job = await self._job(req.caller, req.job_id)
        live = self.core.jobs.get(job.id)
        current = live or job
        if current.state.is_terminal:
            raise Conflict(f"job {current.id} already ended ({current.state})")
        if live is None:
            return self._view(job)
        self.core.cancel(live, "canceled by user" if req.caller.user == live.owner else f"canceled by {req.caller.user}")
        await self.core.store.committed()
        return self._view(live)

    # ------------------------------------------------------------------ logs and files

    async def read_log(self, req: ReadLog) -> dict:
        """Bytes of the job's log from `offset`, its size, and whether that is all of it.

        An agent reports a job's end at once, and the log bytes it had not yet sent follow
        (`supervisor.log_tails`): while they do, `size` is the final size, and a read past
        what the store holds waits up to TAIL_WAIT for more (or `wait`, if longer), so a client
        that reads the log after the end still gets all of it. `final` is true only once the
        job has ended and the reply reaches the final size."""
        job = await self._job(req.caller, req.job_id)
        length = max(0, min(req.length, LOG_READ_BYTES))
        offset = max(0, req.offset)
        live = self.core.jobs.get(job.id)
        tail = self.core.tails.pending(job.id)
        wait = max(req.wait, TAIL_WAIT) if tail is not None else req.wait
        stored = tail.stored if tail is not None else live.log_size if live is not None else None
        if stored is not None and wait > 0 and offset >= stored:
            event = self.core.log_event(job.id)
            try:
                await asyncio.wait_for(event.wait(), min(wait, MAX_LOG_WAIT))
            except asyncio.TimeoutError:
                pass
        data, size = await asyncio.to_thread(self.core.logs.read, job.id, offset, length)
        tail = self.core.tails.pending(job.id)
        if tail is not None:
            size = max(size, tail.final_size)
        current = self.core.jobs.get(job.id)
        terminal = current is None or current.state.is_terminal
        if current is None and not job.state.is_terminal:  # it ended meanwhile (an ended job stays so)
            refreshed = await self.core.store.get_job(job.id)
            terminal = refreshed is None or refreshed.state.is_terminal
            job = refreshed or job
        return {
            "data": data, "offset": req.offset, "size": size,
            "final": terminal and offset + len(data) >= size,
            "state": str((current or job).state),
            "exit_code": (current or job).exit_code,
        }

    async def list_files(self, req: ListFiles) -> dict:
        job = await self._job(req.caller, req.job_id)
        files = await self.core.agent_op(
            job, lambda op_id, run_dir: IoRequest(op_id, job.id, run_dir, IoAction.LIST),
            self.core.cfg.io_timeout, f"list the files of job {job.id}",
        )
        files = files if isinstance(files, list) else files.get("files", [])
        return {"files": [{**f, "mtime": iso(f["mtime"])} if isinstance(f.get("mtime"), (int, float)) else f
                          for f in files]}

    async def read_file(self, req: ReadFile) -> dict:
        job = await self._job(req.caller, req.job_id)
        if not req.path:
            raise InvalidRequest("a file path is required", field="path")
        length = max(0, min(req.length, IO_CHUNK_BYTES))
        return await self.core.agent_op(
            job, lambda op_id, run_dir: IoRequest(op_id, job.id, run_dir, IoAction.READ, req.path, max(0, req.offset), length),
            self.core.cfg.io_timeout, f"read {req.path!r} of job {job.id}",
        )

    async def analysis(self, req: RunAnalysis) -> dict:
        check_wire_value(req.args, "args")  # the gateway checked; a request that came another way
        job = await self._job(req.caller, req.job_id)
        timeout = self.core.cfg.analysis_timeout
        result = await self.core.agent_op(
            job, lambda op_id, run_dir: AnalysisRequest(op_id, job.id, job.code, run_dir, req.args, timeout),
            timeout + min(5.0, timeout), f"analyse job {job.id}",
        )
        return {"result": result}

    # ------------------------------------------------------- workflows (supervisor.workflow_commands, workflow_views)

    async def publish_workflow(self, req: PublishWorkflow) -> dict:
        return await self.core.workflow_commands.publish(req.caller, req.document, req.message, req.execute)

    async def list_workflows(self, req: ListWorkflows) -> dict:
        return await self.core.workflow_views.list(req.caller, req.limit, req.after)

    async def get_workflow(self, req: GetWorkflow) -> dict:
        return await self.core.workflow_views.get(req.caller, req.workflow_id)

    async def execute_workflow(self, req: ExecuteWorkflow) -> dict:
        return await self.core.workflow_commands.execute_as(req.caller, req.workflow_id)

    async def cancel_workflow(self, req: CancelWorkflow) -> dict:
        return await self.core.workflow_commands.cancel(req.caller, req.workflow_id)

    async def workflow_status(self, req: WorkflowStatus) -> dict:
        return await self.core.workflow_views.status(req.caller, req.workflow_id)

    async def workflow_history(self, req: WorkflowHistory) -> dict:
        return await self.core.workflow_views.history(req.caller, req.workflow_id)

    async def delete_workflow(self, req: DeleteWorkflow) -> dict:
        return await self.core.workflow_commands.delete(req.caller, req.workflow_id, req.force)

    # ------------------------------------------------------------------ clusters (sbatch)

    def _cluster_driver(self, name: str, kind: str | None = None) -> tuple[DriverBase, Logins]:
        """The driver instance of cluster `name` and its logins; NotFound for a cluster not
        configured. `kind`: the driver that serves clusters, when the caller looked it up."""
        clusters = self.core.config.clusters
        if name not in clusters:
            known = ", ".join(repr(c) for c in clusters) or "none (no cluster is configured)"
            raise NotFound(f"no cluster {name!r}: this jobvisor knows {known}")
        kind = kind or kind_serving()
        if kind is None:
            raise NotFound(f"cluster {name!r} is configured, but no installed driver serves clusters")
        driver = self.core.driver(target_name(kind, name))
        logins = driver.logins
        if logins is None:
            raise InvalidRequest(f"the {kind} driver installed here has no logins", field="cluster")
        return driver, logins

    async def cluster_login(self, req: ClusterLogin) -> dict:
        """Open the caller's SSH connection to the cluster; their jobs held for a login then
        queue again. The credentials are passed on, never kept."""
        driver, logins = self._cluster_driver(req.cluster)
        user = UserId(req.caller.user)
        try:
            info = await logins.login(user, req.cluster, req.username, req.password or None, req.otp or None, req.use_key)
        except DriverError as exc:  # retryable: try again later (503); permanent: the server's setup (500)
            raise (Unavailable if exc.retryable else OpError)(exc.detail) from None
        self.core.release_held(user, driver.target)
        return info

    async def cluster_logout(self, req: ClusterLogout) -> dict:
        _, logins = self._cluster_driver(req.cluster)
        logins.logout(UserId(req.caller.user))
        return logins.session(UserId(req.caller.user))

    async def list_clusters(self, req: ListClusters) -> list[dict]:
        """Every configured cluster with the caller's login there."""
        user = UserId(req.caller.user)
        default = self.core.config.default_cluster
        out = []
        kind = kind_serving()
        for name, cfg in self.core.config.clusters.items():
            session = self._cluster_driver(name, kind)[1].session(user)  # making a driver instance does no I/O
            out.append({
                "name": name, "default": name == default, "login_host": cfg.login_host, "login_port": cfg.login_port,
                "key_login": bool(cfg.key_file), "partition": cfg.partition or None, "account": cfg.account or None,
                "qos": cfg.qos or None, "max_queued_jobs": cfg.max_queued_jobs,
                "logged_in": session["logged_in"], "username": session["username"], "method": session["method"],
                "work_dir": session["work_dir"],
            })
        return out

    # ------------------------------------------------------------------ events

    async def list_events(self, req: ListEvents) -> dict:
        """A page of committed events after `since`, oldest first; `next` is the page's last
        id when more may follow (None: this was the end, for now); `last_id` the newest
        committed event's id, anyone's (a stream that starts now resumes from there); `pruned`
        whether events after `since` were pruned already (what follows it is not all)."""
        if req.since < 0:
            raise InvalidRequest("since must be an event id (0 or more)", field="since")
        limit = max(1, min(req.limit, MAX_PAGE))
        owner = None if req.caller.is_admin else UserId(req.caller.user)
        events = await self.core.store.list_events(owner, req.since, limit, req.job_id)
        first = await self.core.store.first_event_id() if 0 < req.since < self.core.store.last_event_id else None
        return {"events": [e.to_json() for e in events], "next": events[-1].id if len(events) == limit else None,
                "last_id": self.core.store.last_event_id, "pruned": first is not None and first > req.since + 1}

    async def push_event(self, req: PushEvent) -> dict:
        """A user event, about one of the caller's own jobs or workflows if it names one,
        answered once committed (with its id)."""
        check_wire_value(req.data, "data")
        size = len(json.dumps(req.data, separators=(",", ":")))
        if size > MAX_USER_EVENT_BYTES:
            raise InvalidRequest(f"an event's data may be at most {MAX_USER_EVENT_BYTES} bytes as JSON ({size} given)", field="data")
        user = UserId(req.caller.user)
        if req.job_id:
            job = self.core.jobs.get(JobId(req.job_id)) or await self.core.store.get_job(JobId(req.job_id))
            if job is None or job.owner != user:
                raise InvalidRequest(f"you have no job {req.job_id!r}", field="job_id")
        if req.workflow_id:
            record = await self.core.workflow_rows.get(req.workflow_id)
            if record is None or record.owner != user:
                raise InvalidRequest(f"you have no workflow {req.workflow_id!r}", field="workflow_id")
        emitted = self.core.store.emit(EventKind.USER, user, req.data, job_id=JobId(req.job_id) if req.job_id else None,
                                       workflow_id=req.workflow_id or None)
        await self.core.store.committed()
        assert emitted.id is not None
        return emitted.to_event(emitted.id).to_json()

    # ------------------------------------------------------------------ system

    async def queue(self, req: GetQueue) -> dict:
        user = None if req.caller.is_admin else UserId(req.caller.user)
        drivers = {}
        jobs = []
        for kind, queue in sorted(self.core.queues.items()):
            drivers[kind] = {"cpus_total": queue.cpus_total, "cpus_used": queue.used, "queued": len(queue)}
            for job, position in queue.head(MAX_PAGE - len(jobs), user):
                jobs.append({"id": job.id, "owner": job.owner, "driver": kind, "cpus": job.cpus,
                             "queue_position": position})
        return {"drivers": drivers, "jobs": jobs}

    async def agents(self, req: GetAgents) -> dict:
        return {"agents": [
            a.view() for a in self.core.agents.by_id.values()
            if req.caller.is_admin or a.user == req.caller.user
        ]}

    async def status(self, req: GetStatus) -> dict:
        counts = self.core.store.counts()
        return {
            "version": __version__, "protocol_version": PROTOCOL_VERSION, "counts": counts,
            "agents": len(self.core.agents.by_id), "uptime": time.time() - self.core.started,
            "started_at": iso(self.core.started),
            "drivers": self._driver_status(),
        }

    def _driver_status(self) -> dict:
        """Facts of each driver in use (always the local one: how it enforces memory and cpus)."""
        targets = self.core.targets
        targets.driver(DEFAULT_DRIVER)
        return {target: driver.status() for target, driver in sorted(targets.drivers.items())}
