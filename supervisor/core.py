"""The supervisor's core: jobs, queues, agents and the reactions to what agents report.

Socket handlers decode a message and call one method here; methods that change a job call
its synchronous transition, record it in the store, and let the store publish it once
committed. The only awaits are in the dispatch loop (await-retry: acquire an agent, commit
`starting`, re-check, send) and in request/reply ops with their own timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict

from drivers.base import DriverBase, driver_class, make_driver, target_name
from jobvisor.config import Config
from jobvisor.errors import DriverError, InvalidRequest, OpError, Unavailable
from jobvisor.ids import AgentId, JobId, UserId, new_job_id
from jobvisor.protocol import (
    Ack, CancelJob, ErrorMessage, ForgetJobs, Hello, HelloAck, JobEvent, JobReport, JobSpec,
    KillAgent, LogChunk, Message, OpReply, Progress, RunJob, StartPrefetched, StatusUpdate,
)
from jobvisor.resources import Resources
from jobvisor.states import JobState
from jobvisor.tasks import Tasks
from jobvisor.timing import backoff_delay
from supervisor.agents import Acquire, Agent, AgentRegistry, AgentState
from supervisor.compute_job import ComputeJob
from supervisor.events import EventBus
from supervisor.logstore import LogStore
from supervisor.ops import PendingReplies
from supervisor.scheduler import DriverQueue
from supervisor.store import Store

log = logging.getLogger(__name__)

DEFAULT_DRIVER = "local"
MAX_RETRIES = 100
FORGET_GATHER = 0.05  # seconds: see Supervisor._forget_after_commit


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.cfg = config.supervisor
        state_dir = config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.logs = LogStore(state_dir / "logs")
        self.store = Store(config.database_url, self.logs, commit_interval=config.database.commit_interval,
                           inline_rows=config.database.inline_rows)
        self.store.on_events = self._published
        self.store.on_log_sizes = self._log_grew
        self.bus = EventBus()
        self.jobs: dict[JobId, ComputeJob] = {}  # every job not yet terminal (and committed)
        self.drivers: dict[str, DriverBase] = {}
        self.queues: dict[str, DriverQueue] = {}
        self.agents = AgentRegistry(self.cfg.agent_start_timeout)
        self.agents.on_new_agent = self._persist_agent
        self.replies = PendingReplies()
        self._wake = asyncio.Event()
        self._log_events: dict[JobId, asyncio.Event] = {}
        self._forget: dict[AgentId, set[str]] = defaultdict(set)
        # After a restart: queued jobs of (user, kind)s whose agent may still run some of them
        # (sent just before the crash, before `starting` was committed), held back until that
        # agent re-announced its jobs or the reconnect grace is over. No job runs twice.
        self._held: dict[tuple[UserId, str], dict[JobId, ComputeJob]] = {}
        self._acquiring: set[tuple[UserId, str]] = set()  # (user, kind) with an _acquire_agent running
        self._tasks = Tasks(log, "supervisor background")
        self._loops: list[asyncio.Task] = []
        self.shutting_down = False
        self.started = time.time()

    # ================================================================== life cycle

    async def start(self) -> None:
        await self.store.open()
        for row in await self.store.load_agents():
            agent = Agent(AgentId(row.id), UserId(row.user), row.kind, row.token_hash)
            agent.info = row.info or {}
            self.agents.add_known(agent)
        unfinished = await self.store.load_unfinished()
        sizes = await asyncio.to_thread(lambda: {j.id: self.logs.size(j.id) for j in unfinished if j.state.is_active})
        waiting_for_agents = 0
        maybe_running = {(a.user, a.kind) for a in self.agents.by_id.values()}
        for job in unfinished:
            self.jobs[job.id] = job
            if job.state in (JobState.QUEUED, JobState.WAITING):
                key = (job.owner, job.driver)
                if key in maybe_running:
                    self._held.setdefault(key, {})[job.id] = job
                else:
                    self._queue(job.driver).push(job)
            elif job.state.is_active:
                job.sent = job.state is JobState.RUNNING
                job.log_size = sizes.get(job.id, 0)
                job.run_op = self._queue(job.driver).reserve_running(job)
                agent = self.agents.by_id.get(job.agent_id) if job.agent_id else None
                if agent is not None:
                    agent.jobs.add(job.id)
                waiting_for_agents += 1
        if unfinished:
            log.info("recovered %d unfinished jobs; %d wait up to %g s for their agents to reconnect",
                     len(unfinished), waiting_for_agents, self.cfg.reconnect_grace)
        self._loops.append(asyncio.create_task(self._schedule_loop(), name="scheduler"))
        self._loops.append(asyncio.create_task(self._idle_loop(), name="idle-agents"))
        if self.agents.by_id or waiting_for_agents:
            self._spawn(self._reconcile_after_grace())
        self._wake.set()

    async def shutdown(self) -> None:
        """Stop agents; a job still running when they are gone ends `lost` with the reason."""
        self.shutting_down = True
        for task in self._loops:
            task.cancel()
        reason = "the supervisor is shutting down"
        for agent in list(self.agents.by_id.values()):
            agent.send([KillAgent(reason=reason, cancel_jobs=True)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.shutdown_timeout
        while any(j.state.is_active for j in self.jobs.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.gather(*(self._stop_agent(a) for a in list(self.agents.by_id.values())), return_exceptions=True)
        now = time.time()
        for job in list(self.jobs.values()):
            if job.state.is_active:
                self._end(job, JobState.LOST, "the supervisor shut down before its agent reported the job's end", now)
        self._tasks.cancel_all()
        for driver in self.drivers.values():
            await driver.close()
        await self.store.close()

    def _spawn(self, coro) -> asyncio.Task:
        return self._tasks.spawn(coro)

    # ================================================================== drivers

    def driver(self, target: str) -> DriverBase:
        """The driver instance named `target` ("local", "sbatch:perlmutter"), made on first use."""
        driver = self.drivers.get(target)
        if driver is None:
            try:
                driver = make_driver(target, self.config, self)
            except DriverError as exc:
                raise InvalidRequest(exc.detail, field="driver") from exc
            self.drivers[target] = driver
        return driver

    def target_of(self, kind: str, resources: Resources) -> tuple[str, Resources]:
        """The driver instance a job of driver `kind` with these resources goes to, and the
        resources naming it (a job that names no cluster shows the default one it got)."""
        made = self.drivers.get(kind)
        try:
            cls = type(made) if made is not None else driver_class(kind)
        except DriverError as exc:
            raise InvalidRequest(exc.detail, field="driver") from exc
        instance = cls.instance_for(self.config, resources)
        if instance and cls.instance_resource:
            resources = dataclasses.replace(resources, extra={**(resources.extra or {}), cls.instance_resource: instance})
        return target_name(kind, instance), resources

    def _queue(self, kind: str) -> DriverQueue:
        queue = self.queues.get(kind)
        if queue is None:
            queue = self.queues[kind] = DriverQueue(kind, self.driver(kind).cpus_total, self.cfg.per_user_cpus)
        return queue

    def agent_exited(self, agent_id: AgentId, reason: str) -> None:
        """DriverHost: the agent's process is gone."""
        agent = self.agents.by_id.get(agent_id)
        if agent is not None:
            self._agent_dead(agent, reason)

    def _persist_agent(self, agent: Agent, token_hash: str) -> None:
        self.store.add_agent(agent.id, agent.user, agent.kind, token_hash, {})

    # ================================================================== submit / cancel

    async def submit(self, user: UserId, specs: list[JobSpec]) -> list[ComputeJob]:
        now = time.time()
        jobs = []
        for index, spec in enumerate(specs):
            where = f"jobs[{index}]." if len(specs) > 1 else ""
            if not spec.code or not isinstance(spec.code, str):
                raise InvalidRequest("code must be a non-empty string", field=where + "code")
            if not isinstance(spec.max_retries, int) or not 0 <= spec.max_retries <= MAX_RETRIES:
                raise InvalidRequest(f"max_retries must be between 0 and {MAX_RETRIES}", field=where + "max_retries")
            try:
                resources = Resources.parse(spec.resources)
                target, resources = self.target_of(spec.driver or DEFAULT_DRIVER, resources)
                self.driver(target).validate(resources)
            except OpError as exc:
                raise type(exc)(exc.detail, field=where + (exc.field or "")) from None
            jobs.append(ComputeJob(
                id=new_job_id(), owner=user, name=spec.name[:256], code=spec.code,
                spec=ComputeJob.pack_spec(spec.params, resources.to_wire()), driver=target,
                cpus=resources.cpus, max_retries=spec.max_retries, created_at=now, reason="submitted",
            ))
        self.store.insert(jobs)
        for job in jobs:
            self.store.record(job, job.initial_transition())
        await self.store.committed()
        for job in jobs:
            self.jobs[job.id] = job
            self._queue(job.driver).push(job)
        self._wake.set()
        return jobs

    def cancel(self, job: ComputeJob, reason: str = "canceled by user") -> None:
        """Idempotent: a second cancel (or one racing the job's end) changes nothing."""
        if job.state.is_terminal or job.cancel_reason is not None:
            return
        now = time.time()
        if job.state in (JobState.QUEUED, JobState.WAITING) or not job.sent:
            self._queue(job.driver).remove(job)
            self._end(job, JobState.CANCELED, reason, now)
            return
        job.cancel_reason = reason
        agent = self.agents.by_id.get(job.agent_id) if job.agent_id else None
        if agent is not None:
            agent.send([CancelJob(job.id, reason)])  # if disconnected: sent again at its hello
        log.info("job %s: cancel sent to agent %s", job.id, job.agent_id)

    # ================================================================== scheduling and dispatch

    async def _schedule_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.cfg.schedule_debounce:
                await asyncio.sleep(self.cfg.schedule_debounce)
            for queue in self.queues.values():
                self._promote_held(queue)
                kind = queue.kind

                def ready(user: UserId, kind: str = kind) -> bool:
                    agent = self.agents.current.get((user, kind))
                    return agent is not None and agent.state is AgentState.CONNECTED

                for user in queue.waiting_users():
                    if not ready(user) and (user, kind) not in self._acquiring:
                        self._acquiring.add((user, kind))
                        self._spawn(self._acquire_agent(user, kind))
                groups: dict[UserId, list[ComputeJob]] = defaultdict(list)
                for job, op in queue.schedule(ready):
                    job.run_op = op
                    groups[job.owner].append(job)
                for user, jobs in groups.items():
                    self._send_runs(self.agents.current[(user, kind)], self.driver(kind), jobs)
                self._send_ahead(queue)

    def _promote_held(self, queue: DriverQueue) -> None:
        """Free slots go first to jobs already sent ahead (they left the queue earlier)."""
        for agent in self.agents.by_id.values():
            if agent.kind != queue.kind or not agent.held or agent.state is not AgentState.CONNECTED:
                continue
            while agent.held and queue.free > 0:
                job = next((self.jobs[j] for j in agent.held if j in self.jobs and self.jobs[j].cancel_reason is None), None)
                if job is None or job.cpus > queue.free:
                    break
                agent.held.remove(job.id)
                job.run_op = queue.reserve_running(job)
                agent.send([StartPrefetched(job.id)])

    def _send_ahead(self, queue: DriverQueue) -> None:
        """All slots busy and one user waiting: keep their agent's FIFO filled (see RunJob).

        It is topped up once half of it has been used, not after every job: one frame then
        carries many runs, instead of one frame (and a wake-up of both sides) per job."""
        if self.cfg.prefetch <= 0 or queue.free > 0:
            return
        user = queue.sole_waiting_user()
        agent = self.agents.current.get((user, queue.kind)) if user is not None else None
        if agent is None or agent.state is not AgentState.CONNECTED or not agent.jobs:
            return
        room = self.cfg.prefetch - len(agent.held)
        if room >= max(1, self.cfg.prefetch // 2):
            jobs = queue.take(agent.user, room)
            if jobs:
                self._send_runs(agent, self.driver(queue.kind), jobs, hold=True)

    def _release(self, job: ComputeJob) -> None:
        if job.run_op is not None:
            job.run_op.destroy()
            job.run_op = None
            self._wake.set()

    def _requeue(self, job: ComputeJob, reason: str, now: float) -> None:
        """Back to the head of its queue, same attempt: it never reached an agent."""
        self._release(job)
        if job.state is not JobState.QUEUED:
            self.store.record(job, job.move(JobState.QUEUED, reason, now))
        job.agent_id = None
        job.sent = False
        self._queue(job.driver).push(job, front=True)
        self._wake.set()

    async def _acquire_agent(self, user: UserId, kind: str) -> None:
        """Await-retry for the agent of (user, kind), while that user has jobs queued there.

        After every await the world is checked again: the jobs may have been canceled (then
        stop), the agent may have dropped again (then retry). On success the scheduler is
        woken and hands out slots; on failure the user's queued jobs fail with the reason."""
        driver = self.driver(kind)
        queue = self._queue(kind)
        tries = 0
        try:
            while not self.shutting_down and user in queue.waiting_users():
                if self._hold_for_login(user, driver, queue):
                    return
                got = await self.agents.acquire(user, driver)
                if got.result is Acquire.ACQUIRED and got.agent is not None and got.agent.state is AgentState.CONNECTED:
                    self._wake.set()
                    return
                if got.result is Acquire.FAILED:
                    now = time.time()
                    for job in queue.take(user, len(queue)):
                        self._end(job, JobState.FAILED, f"no agent: {got.reason}", now)
                    return
                tries += 1
                await asyncio.sleep(backoff_delay(tries, base=0.05, cap=1.0))
        finally:
            self._acquiring.discard((user, kind))

    def _send_runs(self, agent: Agent, driver: DriverBase, jobs: list[ComputeJob], hold: bool = False) -> None:
        """Record `starting` and send, with no await in between (so nothing can interleave).

        The record is committed in the background, lazily (a short job's `starting` goes in one
        commit with its end): sending before the commit is safe because a restarted supervisor
        holds back the queued jobs of every user whose agent may still run them until that
        agent has re-announced its jobs (see `start` and `_reconcile`)."""
        now = time.time()
        messages: list[Message] = []
        for job in jobs:
            job.agent_id = agent.id
            job.sent = True
            agent.jobs.add(job.id)
            if hold:
                agent.held.append(job.id)
                reason = f"sent ahead to agent {agent.id}; starts there when a slot frees"
            else:
                reason = f"sent to agent {agent.id}"
            self.store.record(job, job.move(JobState.STARTING, reason, now), lazy=True)
            params, resources = job.unpack_spec()
            messages.append(RunJob(job.id, job.attempt, job.code, params, resources, driver.run_dir(job.owner, job.id), hold))
        agent.idle_since = time.monotonic()
        agent.send(messages)

    # ================================================================== job endings

    def _end(self, job: ComputeJob, state: JobState, reason: str, now: float) -> None:
        """Move a job to a terminal state (or, for `lost` with retries left, to a new attempt)."""
        agent = self.agents.by_id.get(job.agent_id) if job.agent_id else None
        self._release(job)
        if agent is not None:
            agent.jobs.discard(job.id)
            agent.idle_since = time.monotonic()
            if job.id in agent.held:  # ended before it started
                agent.held.remove(job.id)
        self.store.record(job, job.move(state, reason, now))
        if state is JobState.LOST and job.retries_left and not self.shutting_down:
            self.store.record(job, job.retry(f"retrying after: {reason} (attempt {job.attempt + 1} of {job.max_retries + 1})", now))
            self._queue(job.driver).push(job, front=True)
            self._wake.set()
            return
        job_id = job.id

        def evict() -> None:
            current = self.jobs.get(job_id)
            if current is job and job.state.is_terminal:
                del self.jobs[job_id]
            event = self._log_events.pop(job_id, None)
            if event is not None:
                event.set()

        self.store.after_commit(evict)

    def _forget_after_commit(self, agent: Agent, job_ids: list[str]) -> None:
        """Tell the agent to drop these ended jobs once their end is committed (never before:
        after a crash the agent's record is what a lost final state is rebuilt from).

        The ends of FORGET_GATHER seconds go in one ForgetJobs: one per commit was most of the
        frames to an agent running a burst of short jobs, and each frame wakes it."""
        ended = list(job_ids)

        def committed() -> None:
            ready = self._forget[agent.id]
            if not ready:
                asyncio.get_running_loop().call_later(FORGET_GATHER, self._send_forget, agent)
            ready.update(ended)

        self.store.after_commit(committed)

    def _send_forget(self, agent: Agent) -> None:
        ids = self._forget.pop(agent.id, set())
        if ids and agent.state is not AgentState.DEAD:
            agent.send([ForgetJobs(sorted(ids))])

    def _agent_dead(self, agent: Agent, reason: str) -> None:
        if agent.state is AgentState.DEAD:
            return
        log.warning("agent %s of user %s is gone: %s", agent.id, agent.user, reason)
        agent.failure = reason
        self.agents.forget(agent)
        agent.set_state(AgentState.DEAD)
        agent.held.clear()
        self.store.remove_agent(agent.id)
        now = time.time()
        for job_id in list(agent.jobs):
            job = self.jobs.get(job_id)
            if job is None or not job.state.is_active or job.agent_id != agent.id:
                continue
            if job.cancel_reason is not None:
                self._end(job, JobState.CANCELED, job.cancel_reason, now)
            elif not job.sent:
                self._requeue(job, "its agent was lost before the job was sent", now)
            else:
                self._end(job, JobState.LOST, f"its agent was lost: {reason}", now)
        agent.jobs.clear()
        self.replies.fail_all(agent.pending_ops, Unavailable(f"the agent was lost: {reason}"))
        if agent.link is not None:
            agent.link.close(reason)
        self._wake.set()

    # ================================================================== agent messages

    def on_agent_connected(self, agent: Agent, link, hello: Hello) -> None:
        if agent.link is not None and agent.link is not link:
            agent.link.close("replaced by a new connection")
        agent.link = link
        # the same process as before (not one restarted under this id): it keeps every job it
        # was sent until told to forget it, so a sent job it does not name never reached it
        same_process = agent.pid is not None and (agent.pid, agent.host) == (hello.pid, hello.hostname)
        agent.pid = hello.pid
        agent.host = hello.hostname
        agent.connected_at = time.time()
        agent.idle_since = time.monotonic()
        self.agents.current[(agent.user, agent.kind)] = agent
        if agent.kind in self.drivers or agent.kind == DEFAULT_DRIVER:
            self.driver(agent.kind).adopt_agent(agent.id, agent.user, hello.pid, hello.hostname)
        agent.set_state(AgentState.CONNECTED)
        log.info("agent %s of user %s connected (pid %s on %s, %d jobs)", agent.id, agent.user, hello.pid, hello.hostname, len(hello.jobs))
        self._reconcile(agent, hello.jobs, same_process)

    def _reconcile(self, agent: Agent, reports: list[JobReport], same_process: bool = False) -> None:
        now = time.time()
        offsets: dict[str, int] = {}
        forget: list[str] = []
        out: list[Message] = []
        reported = set()
        held = self._held.pop((agent.user, agent.kind), {})
        agent.held.clear()
        for report in reports:
            job = self.jobs.get(JobId(report.job_id))
            if job is not None and job.id in held and job.attempt == report.attempt:
                del held[job.id]  # sent just before a crash: it is running, adopt it
                job.agent_id = agent.id
                job.sent = True
                job.run_op = self._queue(job.driver).reserve_running(job)
                self.store.record(job, job.move(JobState.STARTING, f"re-announced by agent {agent.id}", now))
            if job is None or job.owner != agent.user or job.attempt != report.attempt or not job.state.is_active:
                forget.append(report.job_id)
                if not _is_terminal(report.state):
                    out.append(CancelJob(report.job_id, "the supervisor no longer tracks this job"))
                continue
            reported.add(job.id)
            if job.agent_id != agent.id:
                old = self.agents.by_id.get(job.agent_id) if job.agent_id else None
                if old is not None:
                    old.jobs.discard(job.id)
                job.agent_id = agent.id
            agent.jobs.add(job.id)
            job.sent = True
            offsets[job.id] = job.log_size
            if report.prefetched and report.state == JobState.STARTING:
                agent.held.append(job.id)  # the agent's FIFO, in its order
                if job.run_op is not None:
                    job.run_op.destroy()
                    job.run_op = None
            if job.cancel_reason is not None:
                out.append(CancelJob(job.id, job.cancel_reason))
            self._apply(agent, job, report, now)
        for job_id in list(agent.jobs):
            job = self.jobs.get(job_id)
            if job is None or job.id in reported or not job.state.is_active:
                continue
            agent.jobs.discard(job_id)
            if not job.sent:
                self._requeue(job, "its agent reconnected without it; it had not been sent", now)
            elif same_process:
                self._requeue(job, f"agent {agent.id} reconnected without it: the run never reached it", now)
            else:
                self._end(job, JobState.LOST, f"agent {agent.id} reconnected without it", now)
        agent.send([HelloAck(log_offsets=offsets, forget=forget), *out])
        self._release_held(held.values())

    def _hold_for_login(self, user: UserId, driver: DriverBase, queue: DriverQueue) -> bool:
        """A driver that cannot start the user's agent before the user logs in (sbatch): the
        jobs stay `queued` with the driver's reason, held until `release_held` (the login)."""
        agent = self.agents.current.get((user, driver.target))
        if agent is not None and agent.state not in (AgentState.DEAD, AgentState.STOPPING):
            return False
        reason = driver.login_required(user)
        if not reason:
            return False
        now = time.time()
        held = self._held.setdefault((user, driver.target), {})
        for job in queue.take(user, len(queue)):
            if job.reason != reason:
                job.reason = reason
                job.updated_at = now
                self.store.record(job)
            held[job.id] = job
        return True

    def release_held(self, user: UserId, target: str) -> None:
        """The user logged in: their jobs held for it queue again."""
        self._release_held(self._held.pop((user, target), {}).values())

    def _release_held(self, jobs) -> None:
        for job in jobs:
            if job.state is JobState.QUEUED:
                self._queue(job.driver).push(job)
        self._wake.set()

    def on_agent_messages(self, agent: Agent, messages: list[Message]) -> None:
        now = time.time()
        for message in messages:
            if isinstance(message, StatusUpdate):
                job = self._job_of(agent, message.report.job_id, message.report.attempt)
                if job is not None:
                    self._apply(agent, job, message.report, now)
                elif _is_terminal(message.report.state):
                    self._forget_after_commit(agent, [message.report.job_id])
            elif isinstance(message, LogChunk):
                job = self._job_of(agent, message.job_id, message.attempt)
                if job is not None:
                    self.store.write_log(job.id, message.offset, message.data)
            elif isinstance(message, Progress):
                job = self._job_of(agent, message.job_id, message.attempt)
                if job is not None:
                    job.progress = max(0.0, min(1.0, message.fraction))
                    job.progress_message = message.message[:500]
                    self.bus.publish([JobEvent(job.id, job.owner, str(job.state), job.attempt, now,
                                               progress=job.progress, message=job.progress_message)])
            elif isinstance(message, OpReply):
                agent.pending_ops.discard(message.op_id)
                if not self.replies.resolve(message.op_id, message.ok, message.data, message.error):
                    log.debug("agent %s: reply for op %s that is gone", agent.id, message.op_id)
            elif isinstance(message, Ack):
                pass
            elif isinstance(message, ErrorMessage):
                log.warning("agent %s reports an error about a %s message: %s", agent.id, message.ref_type, message.detail)
            elif isinstance(message, Hello):
                agent.send([ErrorMessage("hello was already received on this connection", "hello")])

    def _job_of(self, agent: Agent, job_id: str, attempt: int) -> ComputeJob | None:
        job = self.jobs.get(JobId(job_id))
        if job is None or job.owner != agent.user or job.attempt != attempt or job.agent_id != agent.id:
            log.debug("agent %s: ignoring a message about job %s attempt %d", agent.id, job_id, attempt)
            return None
        return job

    def _apply(self, agent: Agent, job: ComputeJob, report: JobReport, now: float) -> None:
        try:
            state = JobState(report.state)
        except ValueError:
            log.warning("agent %s sent unknown state %r for job %s", agent.id, report.state, job.id)
            return
        if report.info:
            job.info = {**(job.info or {}), **report.info}
        if job.state.is_terminal:
            return
        if state is JobState.RUNNING and job.state is JobState.STARTING:
            self._running(agent, job, report.reason or "running", report.at or now)
        elif state.is_terminal:
            if job.state is JobState.STARTING and report.started_at is not None:
                self._running(agent, job, "running", report.started_at)  # its start, folded into its end
            job.exit_code = report.exit_code
            job.result = report.result
            if job.cancel_reason is not None and state is JobState.CANCELED:
                reason = report.reason or job.cancel_reason
            elif report.reason:
                reason = report.reason
            elif report.exit_code is not None:
                reason = f"exit code {report.exit_code}"
            else:
                reason = str(state)
            self._end(job, state, reason, report.at or now)
            self._forget_after_commit(agent, [job.id])
        elif report.info:
            self.store.record(job)

    def _running(self, agent: Agent, job: ComputeJob, reason: str, at: float) -> None:
        if job.id in agent.held:
            agent.held.remove(job.id)
        if job.run_op is None:
            # a held job the agent started when one of its jobs ended: that job's end comes
            # in the same frame, so its slot is the one free now
            job.run_op = self._queue(job.driver).reserve_running(job)
        self.store.record(job, job.move(JobState.RUNNING, reason, at))

    # ================================================================== logs

    def _log_grew(self, sizes: dict[str, int]) -> None:
        for job_id, size in sizes.items():
            job = self.jobs.get(JobId(job_id))
            if job is not None:
                job.log_size = max(job.log_size, size)
            event = self._log_events.pop(JobId(job_id), None)
            if event is not None:
                event.set()

    def log_event(self, job_id: JobId) -> asyncio.Event:
        event = self._log_events.get(job_id)
        if event is None:
            event = self._log_events[job_id] = asyncio.Event()
        return event

    def _published(self, events: list[JobEvent]) -> None:
        self.bus.publish(events)

    # ================================================================== request/reply ops

    async def agent_op(self, job: ComputeJob, make, timeout: float, what: str):
        """Send a request op to the job owner's agent of the job's driver; await its reply.

        Await-retry: acquire the agent (starting one if needed), re-check, send; a timeout
        fails this op only and never touches the job's run."""
        driver = self.driver(job.driver)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tries = 0
        while True:
            got = await self.agents.acquire(job.owner, driver)
            if got.result is Acquire.FAILED:
                raise Unavailable(f"no agent to {what}: {got.reason}")
            if got.result is Acquire.ACQUIRED and got.agent is not None and got.agent.state is AgentState.CONNECTED:
                break
            tries += 1
            if loop.time() >= deadline:
                raise Unavailable(f"no agent connected in time to {what}")
            await asyncio.sleep(backoff_delay(tries, base=0.05, cap=1.0))
        agent = got.agent
        op_id, fut = self.replies.new()
        agent.pending_ops.add(op_id)
        agent.send([make(op_id, driver.run_dir(job.owner, job.id))])
        try:
            return await self.replies.wait(op_id, fut, max(0.1, deadline - loop.time()), what)
        finally:
            agent.pending_ops.discard(op_id)
            agent.idle_since = time.monotonic()

    # ================================================================== background loops

    async def _reconcile_after_grace(self) -> None:
        await asyncio.sleep(self.cfg.reconnect_grace)
        for key in list(self._held):
            self._release_held(self._held.pop(key).values())
        for agent in list(self.agents.by_id.values()):
            if agent.state is AgentState.DISCONNECTED and agent.connected_at is None:
                self._agent_dead(agent, f"it did not reconnect within {self.cfg.reconnect_grace:g} s of the supervisor's restart")
        now = time.time()
        for job in list(self.jobs.values()):
            if job.state.is_active and (job.agent_id is None or job.agent_id not in self.agents.by_id):
                if job.sent:
                    self._end(job, JobState.LOST, "its agent did not reconnect after the supervisor restarted", now)
                else:
                    self._requeue(job, "its agent did not reconnect; it had not been sent", now)

    def on_agent_disconnected(self, agent: Agent, link) -> None:
        if agent.link is not link:
            return
        agent.link = None
        if agent.state in (AgentState.CONNECTED, AgentState.STARTING):
            agent.set_state(AgentState.DISCONNECTED)
            log.warning("agent %s of user %s disconnected; it has %g s to come back", agent.id, agent.user, self.cfg.agent_lost_grace)
            self._spawn(self._expect_reconnect(agent))
        self.replies.fail_all(agent.pending_ops, Unavailable("the agent disconnected"))

    async def _expect_reconnect(self, agent: Agent) -> None:
        await asyncio.sleep(self.cfg.agent_lost_grace)
        if agent.state is AgentState.DISCONNECTED:
            await self._stop_agent(agent)
            self._agent_dead(agent, f"it did not reconnect within {self.cfg.agent_lost_grace:g} s")

    async def _stop_agent(self, agent: Agent) -> None:
        if agent.kind in self.drivers:
            try:
                await self.driver(agent.kind).stop_agent(agent.id)
            except Exception:
                log.exception("stopping agent %s failed", agent.id)

    def _idle_timeout(self, agent: Agent) -> float:
        driver = self.drivers.get(agent.kind)
        return driver.idle_timeout if driver is not None else self.config.local.idle_timeout

    async def _idle_loop(self) -> None:
        """Stop agents idle for longer than their driver's idle_timeout."""
        while True:
            shortest = min([self.config.local.idle_timeout, *(d.idle_timeout for d in self.drivers.values())])
            # at most a second: a driver made later (with a shorter timeout) is honoured soon
            await asyncio.sleep(max(0.1, min(shortest / 4, 1.0)))
            now = time.monotonic()
            for agent in list(self.agents.by_id.values()):
                if (agent.state is AgentState.CONNECTED and not agent.busy
                        and now - agent.idle_since > self._idle_timeout(agent)):
                    log.info("agent %s of user %s idle for %.0f s: stopping it", agent.id, agent.user, now - agent.idle_since)
                    agent.send([KillAgent(reason="idle", cancel_jobs=False)])
                    agent.set_state(AgentState.STOPPING)
                    self._spawn(self._stop_agent(agent))

    # ================================================================== views

    def queue_position(self, job: ComputeJob) -> int | None:
        if job.state is not JobState.QUEUED:
            return None
        queue = self.queues.get(job.driver)
        return queue.position(job) if queue is not None else None



def _is_terminal(state: str) -> bool:
    try:
        return JobState(state).is_terminal
    except ValueError:
        return False
