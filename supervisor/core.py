"""The supervisor: its parts, wired, and the calls its sockets make.

    targets            driver instances by target, each with its fair queue (scheduler.DriverQueue)
    jobs               the unfinished jobs and every change to one (JobBook)
    holds              queued jobs kept out of their queue for a reason (restart, login, outage)
    dispatch           the scheduling loop: agents for waiting users, runs and sends ahead, cancel
    pool               agents after their start: connect, drop, idle, death
    recovery           a restart: the database's jobs meet the agents' hellos
    reports            what agents report, turned into job changes
    agent_ops          analysis and io requests to a job's agent, with their own timeouts
    workflow_runs      running workflows: their graphs, releases of dependents at a job's end
    workflow_commands  publish, execute, cancel, delete (workflow_docs checks a document)
    workflow_views     a workflow's view, list, status, history
    workflow_restore   running workflows put back after a restart
    store              persistence; events are published once committed

Socket handlers (supervisor.web, supervisor.requests) call the methods below; each is a thin
hand-off to the part that owns the matter.
"""

from __future__ import annotations

import asyncio
import logging
import time

from jobvisor.config import Config
from jobvisor.errors import Conflict, InvalidRequest, OpError
from jobvisor.limits import MAX_RETRIES
from jobvisor.ids import AgentId, JobId, UserId
from jobvisor.codec import Message
from jobvisor.protocol.agent_wire import Hello
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.resources import Resources
from jobvisor.states import JobState
from jobvisor.tasks import Tasks
from jobvisor.wire_values import check_wire_value
from supervisor import tables
from supervisor.agent_ops import AgentOps
from supervisor.agents import Agent, AgentLink, AgentRegistry
from supervisor.compute_job import ComputeJob, Member
from supervisor.dispatch import Dispatcher
from supervisor.events import EventBus
from supervisor.holds import Holds
from supervisor.inputs import LINKED_INPUTS, InputStore, inputs_gone
from supervisor.job_extra import check_code, job_extra
from supervisor.jobs import JobBook
from supervisor.log_tails import LogTails
from supervisor.logstore import LogStore
from supervisor.ops import PendingReplies
from supervisor.pool import AgentPool
from supervisor.recovery import Recovery
from supervisor.reports import Reports
from supervisor.retries import RetryBackoff
from supervisor.submit import expand_specs, new_job
from supervisor.store import Store
from supervisor.targets import DEFAULT_DRIVER, Targets
from supervisor.workflow_commands import WorkflowCommands
from supervisor.workflow_docs import WorkflowDocs
from supervisor.workflow_inputs import WorkflowInputs
from supervisor.workflow_restore import WorkflowRestore
from supervisor.workflow_runs import RunBook
from supervisor.workflow_start import RunStarter
from supervisor.workflow_store import WorkflowStore
from supervisor.workflow_views import WorkflowViews
from supervisor.timers import Timers

log = logging.getLogger(__name__)

MAX_CODE_NAME: int = tables.jobs.c.code.type.length  # PostgreSQL refuses a longer one; SQLite would keep it


def _with_agent(job: ComputeJob) -> bool:
    """Placed with an agent (starting, running, or sent ahead) and not ended."""
    return job.agent_id is not None and not job.state.is_terminal


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.cfg = config.supervisor
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs = LogStore(config.state_dir / "logs")
        self.store = Store(config.database_url, self.logs, commit_interval=config.database.commit_interval,
                           inline_rows=config.database.inline_rows, events=config.events)
        self.bus = EventBus()
        self.store.on_events = self.bus.publish
        self.store.log_writer.on_sizes = self._log_grew
        self._log_events: dict[JobId, asyncio.Event] = {}
        self._tasks = Tasks(log, "supervisor background")
        self._loops: list[asyncio.Task] = []
        self.shutting_down = False
        self.stop_requested = asyncio.Event()  # an admin asked `up` to stop (POST /admin/shutdown)
        self.started = time.time()

        self.targets = Targets(config, self)
        self.agents = AgentRegistry(self.cfg.agent_start_timeout)
        self.agents.on_new_agent = lambda agent, token_hash: self.store.add_agent(agent.id, agent.user, agent.kind, token_hash, {})
        self.replies = replies = PendingReplies()
        self.jobs = JobBook(self.store, self.targets, self.agents, self._wake, self._job_evicted,
                            RetryBackoff.of(self.cfg))
        self.holds = Holds(self.jobs.enqueue)
        self.inputs = InputStore(config.state_dir / "inputs", config.gateway.max_input_bytes)
        self._with_inputs: set[JobId] = set()  # unfinished jobs whose inputs the state dir keeps
        self.dispatch = Dispatcher(self.cfg, self.targets, self.agents, self.jobs, self.holds, self._tasks, self.inputs)
        self.pool = AgentPool(self.cfg, self.agents, self.targets, self.jobs, replies, self._tasks, self._wake)
        self.tails = LogTails()
        self.reports = Reports(self.jobs, replies, self.tails)
        self.pool.on_dead = self._agent_dead
        self.recovery = Recovery(self.cfg, self.targets, self.agents, self.jobs, self.holds, self.pool, self.reports,
                                 self.tails, self._tasks)
        self.agent_ops = AgentOps(self.targets, self.agents, replies)
        inputs = WorkflowInputs(lambda target, owner, job_id: self.targets.driver(target).run_dir(owner, job_id),
                                self.agent_ops.call, config.workflows.max_transfer, self.cfg.io_timeout,
                                self.inputs, self._with_inputs.add)
        self.workflow_rows = rows = WorkflowStore(self.store)
        self.workflow_runs = runs = RunBook(self.store, rows, self.jobs, self.cancel, inputs)
        self.workflow_docs = docs = WorkflowDocs(config.workflows, self.place, self.make_job)
        self.workflow_views = views = WorkflowViews(self.store, rows, self.jobs, runs)
        self.workflow_commands = WorkflowCommands(self.store, rows, docs, runs,
                                                  RunStarter(self.store, rows, self.jobs, runs, self.make_job), views)
        self.workflow_restore = WorkflowRestore(rows, self.jobs, runs, docs)
        self.dispatch.inputs_of = runs.inputs_of
        self.timers = Timers(self.store, self.workflow_commands.execute)

    def _wake(self) -> None:
        self.dispatch.wake()

    # ================================================================== life cycle

    async def start(self) -> None:
        await self.store.open()
        for row in await self.store.load_agents():
            agent = Agent(AgentId(row.id), UserId(row.user), row.kind, row.token_hash)
            agent.info = row.info or {}
            seen = agent.info.get("hello") or {}
            agent.pid, agent.host = seen.get("pid"), seen.get("host", "")
            self.agents.add_known(agent)
        unfinished = await self.store.load_unfinished()
        self._with_inputs.update(job.id for job in unfinished if job.unpack_all()[2].get("inputs"))
        keep_inputs = self.cfg.keep_inputs_days * 86400
        await self.inputs.prune(keep_inputs, self.store.ends_of)  # before anything new is made
        sizes = await asyncio.to_thread(lambda: {j.id: self.logs.size(j.id) for j in unfinished if j.state.is_active})
        waits_for_agents = self.recovery.restore(unfinished, sizes)
        await self.workflow_restore.restore()  # the waiting jobs' workflows: released what the crash held up
        await self.timers.start()
        self._loops.append(asyncio.create_task(self.dispatch.run(), name="scheduler"))
        self._loops.append(asyncio.create_task(self.pool.idle_loop(), name="idle-agents"))
        self._loops.append(asyncio.create_task(self.inputs.prune_loop(keep_inputs, self.store.ends_of), name="inputs"))
        if waits_for_agents:
            self._tasks.spawn(self.recovery.after_grace())
        self._wake()

    def request_stop(self) -> None:
        """Ask the process serving this supervisor (`jobvisor up`) to stop as SIGTERM does."""
        self.stop_requested.set()

    async def shutdown(self) -> None:
        """A planned stop: the agents stop their jobs, and each run stopped so is committed
        `queued` again as the job's next attempt (`JobBook.interrupt`), to run when the
        supervisor starts again; also one whose agent has not reported its end by
        `shutdown_timeout`."""
        self.shutting_down = self.dispatch.stopping = self.pool.stopping = self.jobs.stopping = True
        for task in self._loops:
            task.cancel()
        self.timers.close()
        await self.pool.stop_all("the supervisor is shutting down")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.shutdown_timeout
        while (any(_with_agent(j) for j in self.jobs) or self.tails) and loop.time() < deadline:
            await asyncio.sleep(0.05)  # the jobs' ends, then the rest of their logs
        await asyncio.gather(*(self.pool.stop(a) for a in list(self.agents.by_id.values())), return_exceptions=True)
        now = time.time()
        for job in self.jobs:
            if _with_agent(job):
                self.jobs.interrupt(job, now)
        self._tasks.cancel_all()
        self.workflow_runs.close()
        self.jobs.close()
        self.holds.close()
        await self.targets.close()
        await self.store.close()
        self.bus.close()  # after the last commit's events went out

    # ================================================================== requests

    def place(self, spec: JobSpec, where: str = "") -> tuple[str, Resources]:
        """Where a job of `spec` runs (its target) and its resources as parsed, checked against
        this server's drivers: InvalidRequest naming `where` + the field otherwise."""
        if not spec.code or not isinstance(spec.code, str) or len(spec.code) > MAX_CODE_NAME:
            raise InvalidRequest(f"code must be a non-empty string of at most {MAX_CODE_NAME} characters",
                                 field=where + "code")
        if not isinstance(spec.max_retries, int) or not 0 <= spec.max_retries <= MAX_RETRIES:
            raise InvalidRequest(f"max_retries must be between 0 and {MAX_RETRIES}", field=where + "max_retries")
        try:
            resources = Resources.parse(spec.resources)
            target, resources = self.targets.target_of(spec.driver or DEFAULT_DRIVER, resources)
            driver = self.targets.driver(target)
            driver.validate(resources)
            check_code(spec.code, driver)
        except OpError as exc:
            raise type(exc)(exc.detail, field=where + (exc.field or "")) from None
        return target, resources

    def make_job(self, user: UserId, spec: JobSpec, now: float, where: str = "", *, member: Member = None,
                 state: JobState = JobState.QUEUED, reason: str = "submitted",
                 placed: tuple[str, Resources] | None = None) -> ComputeJob:
        """A new job of `spec` (not recorded). `placed`: what `place` answered for it, when the
        caller checked it already (a workflow's jobs, whose params its document's parse checked)."""
        if placed is None:
            check_wire_value(spec.params, where + "params")  # the gateway checked; a second line
            placed = self.place(spec, where)
        target, resources = placed
        return new_job(user, spec, target, resources, now, where, member=member, state=state, reason=reason,
                       extra=self._extra(spec, target, where))

    def _extra(self, spec: JobSpec, target: str, where: str) -> dict:
        """Its env and workdir, checked against the driver it goes to."""
        try:
            return job_extra(spec, self.targets.driver(target))
        except OpError as exc:
            raise type(exc)(exc.detail, field=where + (exc.field or "")) from None

    async def submit(self, user: UserId, specs: list[JobSpec], upload_id: str = "",
                     reason: str = "submitted", inputs_of: ComputeJob | None = None) -> list[ComputeJob]:
        """New jobs from specs (an array's spec makes one job per element), committed and
        queued; nothing is kept if any spec is refused. Their inputs: the files of upload
        `upload_id`, or those job `inputs_of` ran with (a resubmit)."""
        now = time.time()
        jobs: list[ComputeJob] = []
        for index, spec in enumerate(specs):
            where = f"jobs[{index}]." if len(specs) > 1 else ""
            check_wire_value(spec.params, where + "params")  # the gateway checked; a second line
            target, resources = self.place(spec, where)
            jobs.extend(expand_specs(user, spec, target, resources, now, where, extra=self._extra(spec, target, where),
                                     max_array=self.config.gateway.max_array, reason=reason))
        given = await self._inputs_for(user, [job.id for job in jobs], upload_id, inputs_of)
        if given:
            for job in jobs:
                params, resources, extra = job.unpack_all()
                job.spec = ComputeJob.pack_spec(params, resources, {**extra, **given})
                if "inputs" in given:
                    self._with_inputs.add(job.id)
        self.store.insert(jobs)
        for job in jobs:
            self.store.record(job, job.initial_transition())
        await self.store.committed()
        for job in jobs:
            self.jobs.adopt(job)
        self.jobs.enqueue(jobs)
        return jobs

    async def _inputs_for(self, user: UserId, job_ids: list[JobId], upload_id: str,
                          inputs_of: ComputeJob | None) -> dict:
        """The spec fields of new jobs' inputs: an upload's files made theirs, or the files
        `inputs_of` ran with (its kept inputs linked, and the files of other jobs it placed by
        path); Conflict when that job's kept inputs were pruned."""
        if upload_id:
            return {"inputs": await self.inputs.claim(user, upload_id, job_ids)}
        if inputs_of is None:
            return {}
        old = inputs_of.unpack_all()[2]
        given = {LINKED_INPUTS: old[LINKED_INPUTS]} if old.get(LINKED_INPUTS) else {}
        if kept := old.get("inputs"):
            listing = await self.inputs.link(inputs_of.id, kept, job_ids)
            if listing is None:
                raise Conflict(inputs_gone(inputs_of.id, kept, self.cfg.keep_inputs_days))
            given["inputs"] = listing
        return given

    def cancel(self, job: ComputeJob, reason: str = "canceled by user") -> None:
        self.dispatch.cancel(job, reason)

    def release_held(self, user: UserId, target: str) -> None:
        """The user logged in to a cluster: their jobs held for that login queue again."""
        self.dispatch.release_login(user, target)

    def driver(self, target: str):
        return self.targets.driver(target)

    @property
    def queues(self):
        return self.targets.queues

    def queue_position(self, job: ComputeJob) -> int | None:
        queue = self.targets.queues.get(job.driver)
        return queue.position(job) if queue is not None and job.state is JobState.QUEUED else None

    async def agent_op(self, job: ComputeJob, make, timeout: float, what: str):
        return await self.agent_ops.call(job, make, timeout, what)

    # ================================================================== agents (supervisor.web, drivers)

    def on_agent_connected(self, agent: Agent, link: AgentLink, hello: Hello) -> None:
        same_process = self.pool.connected(agent, link, hello)
        self.recovery.reconcile(agent, hello.jobs, same_process)

    def on_agent_messages(self, agent: Agent, messages: list[Message]) -> None:
        self.reports.on_messages(agent, messages)

    def on_agent_disconnected(self, agent: Agent, link: AgentLink) -> None:
        self.pool.disconnected(agent, link)

    def agent_exited(self, agent_id: AgentId, reason: str) -> None:
        """DriverHost: the agent's process is gone."""
        self.pool.exited(agent_id, reason)

    # ================================================================== logs

    def _agent_dead(self, agent: Agent) -> None:
        for job_id in self.reports.drop_agent(agent):
            self._log_done(job_id)  # a reader waiting for the rest of that log gets what there is

    def _log_grew(self, sizes: dict[JobId, int]) -> None:
        for job_id, size in sizes.items():
            job = self.jobs.get(job_id)
            if job is not None:
                job.log_size = max(job.log_size, size)
            done = self.tails.grew(job_id, size)
            if done is not None and (agent := self.agents.by_id.get(done.agent_id)) is not None:
                self.reports.forget_after_commit(agent, [job_id])  # its agent held it for the log
            self._log_done(job_id)

    def _job_evicted(self, job_id: JobId) -> None:
        """A job's end is committed and it is forgotten: its log readers wake, its inputs go."""
        self._log_done(job_id)
        if job_id in self._with_inputs:
            self._with_inputs.discard(job_id)
            if not self.cfg.keep_inputs_days:  # else kept for a resubmit, then pruned
                self.inputs.discard([job_id])

    def _log_done(self, job_id: JobId) -> None:
        event = self._log_events.pop(job_id, None)
        if event is not None:
            event.set()

    def log_event(self, job_id: JobId) -> asyncio.Event:
        """Set when the job's log grows or the job ends (a reader waiting for more wakes)."""
        event = self._log_events.get(job_id)
        if event is None:
            event = self._log_events[job_id] = asyncio.Event()
        return event

