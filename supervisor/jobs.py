"""The unfinished jobs, and every change to where one is and what state it is in.

Each method here is synchronous: it moves the job (`ComputeJob.move`), keeps the indexes in
step (its queue, its agent's jobs), and hands the row and the transition to the store, which
publishes the event once committed. Nothing can interleave halfway through one.

The rule these methods keep: a job placed with an agent may have started there, so it only
goes back to its queue under the same attempt when that agent has told us it never got it.
Otherwise it ends (`lost`, which becomes a new attempt while retries remain).

Retries are decided in one place, `end`: an attempt that ends in one of the job's `retry_on`
states (`lost` always; `failed`, `timed_out` if the job asked) starts a new attempt while
`max_retries` allows. The new attempt is `queued` but waits out its backoff
(`supervisor.retries.retry_delay`) outside the queues until its `retry_at`, which is persisted:
a restarted supervisor sets the same timer again (`wait_retry`).

A planned stop (SIGTERM, Ctrl-C, an admin's shutdown: `stopping`) is not an end: the runs it
stops are not the jobs' doing, so each is committed `queued` again as its next attempt
(`interrupt`), one that does not count against `max_retries`, and runs when the supervisor
starts again. A job the user is canceling ends `canceled` as always.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from jobvisor.ids import JobId
from jobvisor.states import JobState
from supervisor.agents import Agent, AgentRegistry
from supervisor.compute_job import ComputeJob, Dispatched, Prefetched
from supervisor.ops import RunOp
from supervisor.retries import RetryBackoff
from supervisor.store import Store
from supervisor.targets import Targets

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted by the supervisor's stop; runs again when it starts"
NOT_STARTED = "queued; the supervisor stopped before its agent started it"


class JobBook:
    def __init__(self, store: Store, targets: Targets, agents: AgentRegistry, wake: Callable[[], None],
                 on_evicted: Callable[[JobId], None], backoff: RetryBackoff = RetryBackoff()) -> None:
        self.store = store
        self._targets = targets
        self._agents = agents
        self._wake = wake  # the scheduler: a slot freed or a job queued
        self._on_evicted = on_evicted
        self._live: dict[JobId, ComputeJob] = {}  # every job not yet terminal (and committed)
        self.stopping = False  # a planned stop: the runs it ends are interrupted, not ended (`interrupt`)
        # every job that reaches a terminal state, on every path, before that end is committed
        # (the workflows release or cancel its dependents in the same commit)
        self.on_end: Callable[[ComputeJob, float], None] = lambda job, now: None
        self.backoff = backoff
        self._retry_timers: dict[JobId, asyncio.TimerHandle] = {}  # new attempts waiting out their backoff

    # ------------------------------------------------------------------ index

    def get(self, job_id: JobId) -> ComputeJob | None:
        return self._live.get(job_id)

    def __getitem__(self, job_id: JobId) -> ComputeJob:
        return self._live[job_id]

    def __contains__(self, job_id: JobId) -> bool:
        return job_id in self._live

    def __iter__(self) -> Iterator[ComputeJob]:
        return iter(list(self._live.values()))

    def adopt(self, job: ComputeJob) -> None:
        """A job read from the database at start-up, or one just submitted and committed."""
        self._live[job.id] = job

    def agent_of(self, job: ComputeJob) -> Agent | None:
        agent_id = job.agent_id
        return self._agents.by_id.get(agent_id) if agent_id is not None else None

    # ------------------------------------------------------------------ placing

    def enqueue(self, jobs: Iterable[ComputeJob], *, front: bool = False) -> None:
        """Queued jobs (placed nowhere) into their queues; the scheduler is woken. A retry
        still waiting out its backoff stays out until its timer puts it in."""
        for job in jobs:
            if job.state is JobState.QUEUED and job.placement is None and job.retry_at is None:
                self._targets.queue(job.driver).push(job, front=front)
        self._wake()

    def dispatch(self, job: ComputeJob, agent: Agent, run_op: RunOp, now: float) -> None:
        """Sent to `agent` with its slots: `starting`, committed lazily (the run goes out
        before the commit; see `supervisor.recovery` for why that is safe)."""
        job.placement = Dispatched(agent.id, run_op)
        agent.jobs.add(job.id)
        self.store.record(job, job.move(JobState.STARTING, f"sent to agent {agent.id}", now), lazy=True)

    def prefetch(self, job: ComputeJob, agent: Agent, *, record: bool = True) -> None:
        """Sent ahead into `agent`'s FIFO: still `queued`, now in its queue's `ahead` lane. The
        row keeps the agent, so a restarted supervisor knows the job may be there."""
        self._targets.queue(job.driver).remove(job)
        job.placement = Prefetched(agent.id)
        agent.jobs.add(job.id)
        self._targets.queue(job.driver).add_ahead(job)
        if record:
            self.store.record(job, lazy=True)

    def restore(self, job: ComputeJob, agent: Agent) -> None:
        """A job read from the database as sent to `agent`: running or starting there (its
        slots taken again), or sent ahead (in the `ahead` lane)."""
        if job.state.is_active:
            job.placement = Dispatched(agent.id, self._targets.queue(job.driver).reserve(job))
            agent.jobs.add(job.id)
        else:
            self.prefetch(job, agent, record=False)

    def slot(self, job: ComputeJob, agent: Agent, reason: str, now: float) -> None:
        """A job `agent` has (sent ahead, or re-announced after a restart) gets its slots: it
        starts now or has just started, so it is `starting` there."""
        self._targets.queue(job.driver).remove(job)
        job.placement = Dispatched(agent.id, self._targets.queue(job.driver).reserve(job))
        agent.jobs.add(job.id)
        self.store.record(job, job.move(JobState.STARTING, reason, now), lazy=True)

    def unslot(self, job: ComputeJob, agent: Agent, now: float) -> None:
        """The agent says the job still waits in its FIFO: it holds no slot there, and to its
        user it is queued again (first in line)."""
        self._release(job)
        job.placement = Prefetched(agent.id)
        self._targets.queue(job.driver).add_ahead(job, front=True)  # it had been given the next slot
        if job.state is not JobState.QUEUED:
            self.store.record(job, job.move(JobState.QUEUED, f"waits in the queue of agent {agent.id}", now))

    def rehome(self, job: ComputeJob, agent: Agent) -> None:
        """`agent` runs the job (it said so at its hello), whatever we believed before."""
        old = self.agent_of(job)
        if old is not None and old is not agent:
            old.jobs.discard(job.id)
        placement = job.placement
        if isinstance(placement, Dispatched):
            job.placement = Dispatched(agent.id, placement.run_op)
        elif isinstance(placement, Prefetched):
            job.placement = Prefetched(agent.id)
        agent.jobs.add(job.id)

    def running(self, job: ComputeJob, agent: Agent, reason: str, at: float) -> None:
        if isinstance(job.placement, Prefetched):
            # the agent started it when one of its jobs ended: that end comes in the same
            # frame, so its slot is the one free now
            self.slot(job, agent, f"started by agent {agent.id} as a slot freed", at)
        self.store.record(job, job.move(JobState.RUNNING, reason, at))

    def requeue(self, job: ComputeJob, reason: str, now: float) -> None:
        """Back to the head of its queue, same attempt: only for a job its agent never got
        (`starting` or sent ahead). One being canceled is canceled instead."""
        if job.cancel_reason is not None:
            self.end(job, JobState.CANCELED, job.cancel_reason, now)
            return
        agent = self.agent_of(job)
        if agent is not None:
            agent.jobs.discard(job.id)
        self._release(job)
        self._targets.queue(job.driver).remove(job)
        job.placement = None
        if job.state is not JobState.QUEUED:
            self.store.record(job, job.move(JobState.QUEUED, reason, now))
        else:
            job.reason = reason
            job.updated_at = now
            self.store.record(job)
        self._targets.queue(job.driver).push(job, front=True)
        self._wake()

    # ------------------------------------------------------------------ endings

    def end(self, job: ComputeJob, state: JobState, reason: str, now: float) -> None:
        """Move a job to a terminal state, or, when its attempt ended in one of its `retry_on`
        states with retries left, to a new attempt (after its backoff): the one place that
        decides a retry."""
        self._detach(job)
        self.store.record(job, job.move(state, reason, now))
        if job.retries_after(state):
            delay = self.backoff.delay(job.attempt)
            after = f"attempt {job.attempt + 1} of {job.attempts_allowed} after: {reason}"
            self.store.record(job, job.retry(f"retrying in {delay:g} s, {after}" if delay > 0 else f"retrying, {after}",
                                             now, delay))
            self.store.restart_log(job.id)
            log.info("job %s: %s ended %s; attempt %d in %g s", job.id, job.owner, state, job.attempt, delay)
            if delay > 0:
                self.wait_retry(job, delay)
            else:
                self._targets.queue(job.driver).push(job, front=True)
                self._wake()
            return
        self.on_end(job, now)
        job_id = job.id

        def evict() -> None:
            if self._live.get(job_id) is job and job.state.is_terminal:
                del self._live[job_id]
            self._on_evicted(job_id)

        self.store.after_commit(evict)

    def wait_retry(self, job: ComputeJob, delay: float) -> None:
        """A new attempt queues once `delay` seconds have passed (its `retry_at`)."""
        self._cancel_retry_timer(job.id)
        self._retry_timers[job.id] = asyncio.get_running_loop().call_later(max(0.0, delay), self._retry_due, job)

    def _retry_due(self, job: ComputeJob) -> None:
        self._retry_timers.pop(job.id, None)
        if self._live.get(job.id) is not job or job.state is not JobState.QUEUED or job.retry_at is None:
            return  # canceled (or ended) meanwhile
        job.retry_at = None
        self.store.record(job)
        self.enqueue([job], front=True)

    def _cancel_retry_timer(self, job_id: JobId) -> None:
        timer = self._retry_timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        """Stop the retry timers (shutting down: their `retry_at` is kept for the next start)."""
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()

    def lose_or_cancel(self, job: ComputeJob, reason: str, now: float) -> None:
        """Its agent is gone: a job being canceled is canceled; any other one may have
        started there, so it is `lost` (a new attempt if retries remain), or, when the
        supervisor's planned stop took the agent away, interrupted."""
        if job.cancel_reason is not None:
            self.end(job, JobState.CANCELED, job.cancel_reason, now)
        elif self.stopping:
            self.interrupt(job, now)
        else:
            self.end(job, JobState.LOST, reason, now)

    def interrupt(self, job: ComputeJob, now: float, *, never_started: bool = False) -> None:
        """The supervisor's planned stop ended the job's run (its agent canceled it on the way
        out, or went away with it): `queued` again as its next attempt, which does not count
        against `max_retries` and runs once the supervisor starts again. `never_started`: its
        agent said so of a job sent ahead, which then stays `queued` under the same attempt.
        A job being canceled is canceled."""
        if job.cancel_reason is not None:
            self.end(job, JobState.CANCELED, job.cancel_reason, now)
            return
        if never_started and job.state is JobState.QUEUED:
            self.requeue(job, NOT_STARTED, now)
            return
        self._detach(job)
        self.store.record(job, job.retry_interrupted(INTERRUPTED, now))
        self.store.restart_log(job.id)
        log.info("job %s of %s: attempt %d interrupted by the stop; attempt %d runs after the restart",
                 job.id, job.owner, job.attempt - 1, job.attempt)

    def _detach(self, job: ComputeJob) -> None:
        """The attempt is over: out of its slots, its queue, its retry timer and its agent's jobs."""
        agent = self.agent_of(job)
        self._release(job)
        self._targets.queue(job.driver).remove(job)
        self._cancel_retry_timer(job.id)
        if agent is not None:
            agent.jobs.discard(job.id)
            agent.idle_since = time.monotonic()

    def _release(self, job: ComputeJob) -> None:
        """Free the job's slots (if it holds any) and wake the scheduler to hand them out."""
        run_op = job.run_op
        if run_op is not None and run_op.alive:
            run_op.destroy()
            self._wake()
