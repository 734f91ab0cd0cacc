"""Dispatch: from the queues to the agents.

One loop, woken by an event (a submit, a freed slot, an agent that connected), runs a pass
over every queue: it gets each waiting user an agent (await-retry, in a task of its own),
lets the scheduler pick the jobs that fit the free slots, and sends them. When every slot is
busy and a single user is waiting, it also sends work ahead: the agent keeps those runs in a
FIFO and starts the next one the moment one of its jobs ends, instead of a round trip later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from drivers.base import DriverBase
from jobvisor.config import SupervisorConfig
from jobvisor.ids import UserId
from jobvisor.codec import Message
from jobvisor.protocol.agent_wire import CancelJob, InputFile, RunJob, StartPrefetched
from jobvisor.states import JobState
from jobvisor.tasks import Tasks
from jobvisor.timing import backoff_delay
from supervisor.agents import Acquire, Agent, AgentRegistry, AgentState
from supervisor.compute_job import ArrayMember, ComputeJob, Prefetched
from supervisor.holds import HoldKind, Holds
from supervisor.inputs import InputStore, linked_of, read_inputs, source_inputs
from supervisor.jobs import JobBook
from supervisor.ops import RunOp
from supervisor.scheduler import DriverQueue
from supervisor.targets import Targets

log = logging.getLogger(__name__)

OUTAGE_RETRY_CAP = 60.0  # seconds: the longest wait between two tries of a backend that is down


def outage_delay(tries: int) -> float:
    """Seconds before the next try of a driver backend that failed `tries` times in a row."""
    return backoff_delay(tries, base=1.0, cap=OUTAGE_RETRY_CAP)


class Dispatcher:
    def __init__(self, cfg: SupervisorConfig, targets: Targets, agents: AgentRegistry, jobs: JobBook,
                 holds: Holds, tasks: Tasks, inputs: InputStore | None = None) -> None:
        self.cfg = cfg
        self.inputs = inputs
        self._targets = targets
        self._agents = agents
        self._jobs = jobs
        self._holds = holds
        self._tasks = tasks
        self._wake = asyncio.Event()
        self._acquiring: set[tuple[UserId, str]] = set()  # (user, target) with an acquire running
        self._outages: dict[tuple[UserId, str], int] = {}  # failed tries in a row of a backend that may come back
        self.stopping = False
        # files a job's run places in its run dir (a workflow's inputs; supervisor.workflow_runs)
        self.inputs_of: Callable[[ComputeJob], list[InputFile]] = lambda job: []

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.cfg.schedule_debounce:
                await asyncio.sleep(self.cfg.schedule_debounce)
            for queue in list(self._targets.queues.values()):
                try:
                    self._pass(queue)
                except Exception:  # a bug about one job must not stop every dispatch after it
                    log.exception("the scheduling pass over %s failed", queue.kind)

    def _ready(self, user: UserId, target: str) -> Agent | None:
        agent = self._agents.current.get((user, target))
        return agent if agent is not None and agent.state is AgentState.CONNECTED else None

    def _pass(self, queue: DriverQueue) -> None:
        target = queue.kind
        self._slot_sent_ahead(queue)
        for user in queue.waiting_users():
            if self._ready(user, target) is None and (user, target) not in self._acquiring:
                self._acquiring.add((user, target))
                self._tasks.spawn(self._acquire_agent(user, target))
        groups: dict[UserId, list[tuple[ComputeJob, RunOp]]] = defaultdict(list)
        for job, op in queue.schedule(lambda user: self._ready(user, target) is not None):
            groups[job.owner].append((job, op))
        now = time.time()
        for user, picks in groups.items():
            agent = self._agents.current[(user, target)]
            for job, op in picks:
                self._jobs.dispatch(job, agent, op, now)
            self._send_runs(agent, [job for job, _ in picks], prefetched=False)
        self._send_ahead(queue)

    def _slot_sent_ahead(self, queue: DriverQueue) -> None:
        """Free slots go first to jobs already sent ahead: they were next in line."""
        now = time.time()
        for job in queue.ahead():
            if queue.free <= 0:
                return
            placement = job.placement
            if not isinstance(placement, Prefetched) or job.cancel_reason is not None or job.cpus > queue.free:
                continue
            agent = self._agents.by_id.get(placement.agent)
            if agent is None or agent.state is not AgentState.CONNECTED:
                continue
            self._jobs.slot(job, agent, f"sent to agent {agent.id}", now)
            agent.send([StartPrefetched(job.id)])

    def _send_ahead(self, queue: DriverQueue) -> None:
        """All slots busy and one user waiting: keep their agent's FIFO filled.

        It is topped up once half of it has been used, not after every job: one frame then
        carries many runs, instead of one frame (and a wake-up of both sides) per job."""
        if self.cfg.prefetch <= 0 or queue.free > 0:
            return
        user = queue.sole_waiting_user()
        agent = self._ready(user, queue.kind) if user is not None else None
        if agent is None or not agent.jobs:
            return
        waiting_there = sum(1 for job in queue.ahead() if job.agent_id == agent.id)
        room = self.cfg.prefetch - waiting_there
        if room >= max(1, self.cfg.prefetch // 2):
            jobs = queue.take_ahead(agent.user, room)
            for job in jobs:
                self._jobs.prefetch(job, agent)
            if jobs:
                self._send_runs(agent, jobs, prefetched=True)

    def _send_runs(self, agent: Agent, jobs: list[ComputeJob], *, prefetched: bool) -> None:
        driver = self._targets.driver(agent.kind)
        messages: list[Message] = []
        for job in jobs:
            params, resources, extra = job.unpack_all()
            member = job.member
            linked = linked_of(extra)  # files of other jobs, by path
            run = RunJob(job.id, job.attempt, job.code, params, resources, driver.run_dir(job.owner, job.id),
                         prefetched, inputs=linked if linked is not None else self.inputs_of(job),
                         env=extra.get("env") or {},
                         workdir=extra.get("workdir") or "",
                         array_index=member.index if isinstance(member, ArrayMember) else None)
            listing = extra.get("inputs")
            if listing and self.inputs is not None:
                sources = source_inputs(self.inputs, job.id, listing, driver.input_source)
                if sources is None:  # the agent cannot see this machine: the bytes go, read off the loop
                    if messages:
                        agent.send(messages)
                        messages = []
                    store, limit = self.inputs, self.cfg.max_message_bytes
                    agent.send_after_read(lambda run=run, listing=listing: read_inputs(store, run, listing, limit))
                    continue
                run = dataclasses.replace(run, inputs=[*run.inputs, *sources])
            messages.append(run)
        agent.idle_since = time.monotonic()
        if messages:
            agent.send(messages)

    # ------------------------------------------------------------------ agents for waiting users

    async def _acquire_agent(self, user: UserId, target: str) -> None:
        """Await-retry for the agent of (user, target), while that user has jobs queued there.

        After every await the world is checked again: the jobs may have been canceled (then
        stop), the agent may have dropped again (then retry). On success the scheduler is
        woken and hands out slots. A failure that may pass holds the user's queued jobs and
        tries again later, with backoff; a permanent one fails them with its reason."""
        driver = self._targets.driver(target)
        queue = self._targets.queue(target)
        tries = 0
        try:
            while not self.stopping and user in queue.waiting_users():
                if self._hold_for_login(user, driver, queue):
                    return
                got = await self._agents.acquire(user, driver)
                if got.result is Acquire.ACQUIRED and got.agent is not None and got.agent.state is AgentState.CONNECTED:
                    self._outages.pop((user, target), None)
                    self.wake()
                    return
                if got.result is Acquire.UNAVAILABLE:
                    self._hold_for_outage(user, target, queue, got.reason)
                    return
                if got.result is Acquire.FAILED:
                    now = time.time()
                    for job in queue.take(user, len(queue)):
                        self._jobs.end(job, JobState.FAILED, f"no agent: {got.reason}", now)
                    return
                tries += 1
                await asyncio.sleep(backoff_delay(tries, base=0.05, cap=1.0))
        finally:
            self._acquiring.discard((user, target))

    def _hold_jobs(self, kind: HoldKind, user: UserId, target: str, queue: DriverQueue, reason: str):
        now = time.time()
        jobs = queue.take(user, len(queue))
        for job in jobs:
            if job.reason != reason:
                job.reason = reason
                job.updated_at = now
                self._jobs.store.record(job)
        return self._holds.add(kind, user, target, jobs)

    def _hold_for_login(self, user: UserId, driver: DriverBase, queue: DriverQueue) -> bool:
        """A driver that cannot start the user's agent before the user logs in: the jobs stay
        `queued` with the driver's reason until the login releases them."""
        agent = self._agents.current.get((user, driver.target))
        if agent is not None and agent.state not in (AgentState.DEAD, AgentState.STOPPING):
            return False
        reason = driver.login_required(user)
        if not reason:
            return False
        self._hold_jobs(HoldKind.LOGIN, user, driver.target, queue, reason)
        return True

    def _hold_for_outage(self, user: UserId, target: str, queue: DriverQueue, error: str) -> None:
        tries = self._outages[(user, target)] = self._outages.get((user, target), 0) + 1
        delay = outage_delay(tries)
        log.warning("user %s, %s: %s; retrying in %.0f s (try %d)", user, target, error, delay, tries)
        hold = self._hold_jobs(HoldKind.OUTAGE, user, target, queue, f"{error}; retrying in {delay:.0f} s")
        self._holds.release_later(hold, delay)

    def release_login(self, user: UserId, target: str) -> None:
        """The user logged in: their jobs held for it queue again."""
        self._holds.release(HoldKind.LOGIN, user, target)

    # ------------------------------------------------------------------ cancel

    def cancel(self, job: ComputeJob, reason: str) -> None:
        """Idempotent: a second cancel (or one racing the job's end) changes nothing.

        A job placed nowhere ends at once. A job sent ahead ends at once too, and its agent
        is told to drop it (if that agent had just started it, the cancel stops it). A job
        starting or running ends when its agent reports the end of the process."""
        if job.state.is_terminal or job.cancel_reason is not None:
            return
        now = time.time()
        agent = self._jobs.agent_of(job)
        if not job.state.is_active:
            self._holds.discard(job)
            if agent is not None:
                agent.send([CancelJob(job.id, reason)])
            self._jobs.end(job, JobState.CANCELED, reason, now)
            return
        job.cancel_reason = reason
        if agent is not None:
            agent.send([CancelJob(job.id, reason)])  # if disconnected: sent again at its hello
        log.info("job %s: cancel sent to agent %s", job.id, job.agent_id)

