"""Recovery: after a restart, the database's view of the jobs meets the agents' view.

A run is sent to its agent before its `starting` is committed (the commit is lazy: a short
job's start goes in one commit with its end). So after a crash:

* a job the database has as `starting` or `running`, or as `queued` with an agent (sent
  ahead), was sent to that agent and may have started. It waits for that agent's hello. If the
  agent names it, it goes on; if the agent does not name it, it never got the run (an agent
  keeps every job it was sent until it is told to forget it, which happens only once the
  job's end is committed); if the agent never comes back, the job is `lost` (a new attempt
  while retries remain). It is never queued again under the same attempt unless its agent
  said it never got it.
* a job the database has as `queued` with no agent may have been sent in the last moments
  before the crash. Every queued job of a user whose agent may still be alive is therefore
  held (`HoldKind.RESTART`) until that agent's hello, or until the reconnect grace is over.
"""

from __future__ import annotations

import asyncio
import logging
import time

from jobvisor.config import SupervisorConfig
from jobvisor.ids import JobId, UserId
from jobvisor.codec import Message
from jobvisor.protocol.agent_wire import CancelJob, HelloAck, JobReport
from jobvisor.errors import Unavailable
from jobvisor.states import JobState
from jobvisor.tasks import Tasks
from supervisor.agents import Agent, AgentRegistry, AgentState
from supervisor.compute_job import ComputeJob, Dispatched, Prefetched, Restored
from supervisor.holds import HoldKind, Holds
from supervisor.jobs import JobBook
from supervisor.log_tails import LogTails
from supervisor.pool import AgentPool
from supervisor.reports import Reports
from supervisor.targets import Targets

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, cfg: SupervisorConfig, targets: Targets, registry: AgentRegistry, jobs: JobBook,
                 holds: Holds, pool: AgentPool, reports: Reports, tails: LogTails, tasks: Tasks) -> None:
        self.cfg = cfg
        self._targets = targets
        self._registry = registry
        self._jobs = jobs
        self._holds = holds
        self._pool = pool
        self._reports = reports
        self._tails = tails
        self._tasks = tasks

    # ------------------------------------------------------------------ start-up

    def restore(self, unfinished: list[ComputeJob], log_sizes: dict[JobId, int]) -> bool:
        """Put the jobs read from the database back in place. True if anything waits for
        agents to come back (then `after_grace` must run once the grace is over)."""
        maybe_alive = {(a.user, a.kind) for a in self._registry.by_id.values()}
        restart_held: dict[tuple[UserId, str], list[ComputeJob]] = {}
        with_agents = 0
        now = time.time()
        for job in unfinished:
            self._jobs.adopt(job)
            placement = job.placement
            agent_id = placement.agent if isinstance(placement, Restored) else None
            if job.state.is_active or agent_id is not None:
                agent = self._registry.by_id.get(agent_id) if agent_id is not None else None
                if agent is None:
                    self._jobs.lose_or_cancel(job, "its agent was gone when the supervisor restarted", now)
                    continue
                job.log_size = log_sizes.get(job.id, 0)
                self._jobs.restore(job, agent)
                with_agents += 1
            elif job.state is JobState.QUEUED and job.retry_at is not None:
                self._jobs.wait_retry(job, job.retry_at - now)  # a retry waiting out its backoff
            elif job.state is JobState.QUEUED:  # a waiting job waits for its workflow (supervisor.workflow_restore)
                key = (job.owner, job.driver)
                if key in maybe_alive:
                    restart_held.setdefault(key, []).append(job)
                else:
                    self._targets.queue(job.driver).push(job)
        for (user, target), jobs in restart_held.items():
            self._holds.add(HoldKind.RESTART, user, target, jobs)
        if unfinished:
            log.info("recovered %d unfinished jobs; %d wait up to %g s for their agents to reconnect",
                     len(unfinished), with_agents, self.cfg.reconnect_grace)
        return bool(self._registry.by_id or with_agents)

    async def after_grace(self) -> None:
        await asyncio.sleep(self.cfg.reconnect_grace)
        self._holds.release_all(HoldKind.RESTART)
        for agent in list(self._registry.by_id.values()):
            if agent.state is AgentState.DISCONNECTED and agent.connected_at is None:
                self._pool.dead(agent, f"it did not reconnect within {self.cfg.reconnect_grace:g} s of the supervisor's restart")

    # ------------------------------------------------------------------ an agent's hello

    def reconcile(self, agent: Agent, reports: list[JobReport], same_process: bool) -> None:
        """Match what the agent says it has with what we placed with it, answer with a
        HelloAck (where each job's log goes on, which jobs to forget), and release the queued
        jobs held back for it."""
        now = time.time()
        offsets: dict[JobId, int] = {}
        forget: list[JobId] = []
        out: list[Message] = []
        reported: set[JobId] = set()
        ended_elsewhere: list[JobReport] = []
        held = {job.id: job for job in self._holds.take(HoldKind.RESTART, agent.user, agent.kind)}
        for report in reports:
            tail = self._tails.of(report.job_id, agent.id, report.attempt) if report.state.is_terminal else None
            if tail is not None:  # ended, its log on the way: it goes on from what the store holds
                offsets[report.job_id] = tail.stored
                continue
            job = self._jobs.get(report.job_id)
            if job is None and report.state.is_terminal and report.log_size > 0:
                ended_elsewhere.append(report)  # maybe ended before a restart, its log not all here
                continue
            if job is not None and job.placement is None and job.state is JobState.QUEUED \
                    and job.owner == agent.user and job.attempt == report.attempt:
                held.pop(job.id, None)
                self._adopt_unrecorded(job, agent, report, now)
            if job is None or job.owner != agent.user or job.attempt != report.attempt or job.state.is_terminal \
                    or job.placement is None:
                forget.append(report.job_id)
                if not report.state.is_terminal:
                    out.append(CancelJob(report.job_id, "the supervisor no longer tracks this job"))
                continue
            reported.add(job.id)
            self._jobs.rehome(job, agent)
            offsets[job.id] = job.log_size
            if report.prefetched and isinstance(job.placement, Dispatched) and job.state is JobState.STARTING:
                self._jobs.unslot(job, agent, now)  # waits in the agent's FIFO: it holds no slot yet
            if job.cancel_reason is not None:
                out.append(CancelJob(job.id, job.cancel_reason))
            self._reports.apply(agent, job, report, now)
        for job_id in list(agent.jobs):
            job = self._jobs.get(job_id)
            if job is None or job.id in reported or job.state.is_terminal:
                continue
            if same_process and job.state is not JobState.RUNNING:
                # the agent keeps every run it got until told to forget it: this one never reached it
                self._jobs.requeue(job, f"agent {agent.id} reconnected without it: the run never reached it", now)
            else:  # another process under the agent's id: it may have run the job
                self._jobs.lose_or_cancel(job, f"agent {agent.id} reconnected without it", now)
        if ended_elsewhere:
            self._tasks.spawn(self._ack_after_lookup(agent, ended_elsewhere, offsets, forget, out))
        else:
            agent.send([HelloAck(log_offsets=offsets, forget=forget), *out])
        self._jobs.enqueue(held.values())

    async def _ack_after_lookup(self, agent: Agent, reports: list[JobReport], offsets: dict[JobId, int],
                                forget: list[JobId], out: list[Message]) -> None:
        """Ended jobs the agent still holds that this supervisor has not in memory: ended and
        committed before a restart, their log maybe not all written when it stopped (an end
        does not wait for its log). Each whose row says it ended with that agent and attempt
        has its tail taken from what the log store holds; the others are forgotten. Then the
        HelloAck goes (the agent sends no log before it)."""
        store = self._jobs.store
        try:
            rows = [await store.get_job(report.job_id) for report in reports]
            sizes = await asyncio.to_thread(lambda: [store.logs.size(report.job_id) for report in reports])
        except Unavailable as exc:
            log.warning("agent %s: cannot look up %d ended jobs it announced (%s); they are forgotten", agent.id, len(reports), exc)
            rows, sizes = [None] * len(reports), [0] * len(reports)
        for report, row, size in zip(reports, rows, sizes):
            if row is not None and row.state.is_terminal and row.owner == agent.user and row.attempt == report.attempt \
                    and row.agent_id == agent.id and size < report.log_size:
                self._tails.expect(row.id, agent.id, row.attempt, report.log_size, size)
                offsets[row.id] = size
                log.info("job %s attempt %d: ended before the restart; its log goes on from %d of %d bytes",
                         row.id, row.attempt, size, report.log_size)
            else:
                forget.append(report.job_id)
        agent.send([HelloAck(log_offsets=offsets, forget=forget), *out])

    def _adopt_unrecorded(self, job: ComputeJob, agent: Agent, report: JobReport, now: float) -> None:
        """A queued job the agent has: it was sent just before a crash, before that was committed."""
        if report.prefetched:
            self._jobs.prefetch(job, agent)
        else:  # stamped no later than the start it reports, so the history reads in order
            at = min(now, report.started_at or report.at or now)
            self._jobs.slot(job, agent, f"re-announced by agent {agent.id}", at)
