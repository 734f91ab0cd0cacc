"""What agents tell the supervisor, turned into job changes: status reports, log bytes,
progress and the replies to request ops. Agents report; the supervisor decides."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from jobvisor.ids import AgentId, JobId
from jobvisor.pacing import FORGET_GATHER
from jobvisor.codec import Message
from jobvisor.protocol.agent_wire import (
    Ack, ErrorMessage, ForgetJobs, Hello, JobReport, LogChunk, OpReply, Progress, StatusUpdate,
)
from jobvisor.reasons import exit_reason
from jobvisor.states import JobState
from supervisor.agents import Agent, AgentState
from supervisor.compute_job import ComputeJob
from supervisor.jobs import JobBook
from supervisor.log_tails import LogTails
from supervisor.ops import PendingReplies

log = logging.getLogger(__name__)


class Reports:
    def __init__(self, jobs: JobBook, replies: PendingReplies, tails: LogTails) -> None:
        self._jobs = jobs
        self._replies = replies
        self._tails = tails
        self._forget: dict[AgentId, set[JobId]] = defaultdict(set)

    def on_messages(self, agent: Agent, messages: list[Message]) -> None:
        now = time.time()
        for message in messages:
            if isinstance(message, StatusUpdate):
                report = message.report
                tail = self._tails.of(report.job_id, agent.id, report.attempt) if report.state.is_terminal else None
                if tail is not None and report.log_size < tail.final_size:  # the agent could not read the rest
                    self._tails.expect(report.job_id, agent.id, report.attempt, report.log_size, tail.stored)
                job = self._job_of(agent, message.report.job_id, message.report.attempt)
                if job is not None:
                    self.apply(agent, job, message.report, now)
                elif message.report.state.is_terminal:
                    self.forget_after_commit(agent, [message.report.job_id])
            elif isinstance(message, LogChunk):
                if message.offset >= 0 and self._takes_log(agent, message):
                    self._jobs.store.write_log(message.job_id, message.offset, message.data)
            elif isinstance(message, Progress):
                job = self._job_of(agent, message.job_id, message.attempt)
                if job is not None:
                    job.progress = max(0.0, min(1.0, message.fraction))
                    job.progress_message = message.message[:500]
                    self._jobs.store.progress(job)
            elif isinstance(message, OpReply):
                agent.pending_ops.discard(message.op_id)
                if not self._replies.resolve(message.op_id, message.ok, message.data, message.error):
                    log.debug("agent %s: reply for op %s that is gone", agent.id, message.op_id)
            elif isinstance(message, Ack):
                pass
            elif isinstance(message, ErrorMessage):
                log.warning("agent %s reports an error about a %s message: %s", agent.id, message.ref_type, message.detail)
            elif isinstance(message, Hello):
                agent.send([ErrorMessage("hello was already received on this connection", "hello")])

    def _job_of(self, agent: Agent, job_id: JobId, attempt: int) -> ComputeJob | None:
        job = self._jobs.get(job_id)
        if job is None or job.owner != agent.user or job.attempt != attempt or job.agent_id != agent.id:
            log.debug("agent %s: ignoring a message about job %s attempt %d", agent.id, job_id, attempt)
            return None
        return job

    def _takes_log(self, agent: Agent, chunk: LogChunk) -> bool:
        """Log bytes of a running job from its agent, or of an ended one whose tail is due."""
        job = self._jobs.get(chunk.job_id)
        if job is not None and not job.state.is_terminal:
            return self._job_of(agent, chunk.job_id, chunk.attempt) is not None
        if self._tails.of(chunk.job_id, agent.id, chunk.attempt) is not None:
            return True
        log.debug("agent %s: ignoring log bytes of job %s attempt %d", agent.id, chunk.job_id, chunk.attempt)
        return False

    def apply(self, agent: Agent, job: ComputeJob, report: JobReport, now: float) -> None:
        """One job's report from the agent it is placed with."""
        state = report.state
        if report.info:
            job.info = {**(job.info or {}), **report.info}
        if job.state.is_terminal:  # ended here first (a cancel of a job sent ahead): the agent may drop it
            if state.is_terminal:
                self.forget_after_commit(agent, [job.id])
            return
        if state is JobState.RUNNING and job.state is not JobState.RUNNING:
            self._jobs.running(job, agent, report.reason or "running", report.at or now)
        elif state.is_terminal:
            if job.state is not JobState.RUNNING and report.started_at is not None:
                self._jobs.running(job, agent, "running", report.started_at)  # its start, folded into its end
            job.exit_code = report.exit_code
            job.result = report.result
            if job.cancel_reason is not None and state is JobState.CANCELED:
                reason = report.reason or job.cancel_reason
            elif report.reason:
                reason = report.reason
            elif report.exit_code is not None:
                reason = exit_reason(report.exit_code)
            else:
                reason = str(state)
            if state is JobState.CANCELED and job.cancel_reason is None and self._jobs.stopping:
                # the planned stop's cancel (KillAgent), not the user's: the job runs again, as
                # its next attempt with a log of its own
                self._jobs.interrupt(job, report.at or now, never_started=report.started_at is None)
            else:
                attempt = job.attempt
                self._jobs.end(job, state, reason, report.at or now)
                self._tails.expect(job.id, agent.id, attempt, report.log_size, job.log_size)
            self.forget_after_commit(agent, [job.id])
        elif report.info:
            self._jobs.store.record(job)

    # ------------------------------------------------------------------ forgetting ended jobs

    def forget_after_commit(self, agent: Agent, job_ids: list[JobId]) -> None:
        """Tell the agent to drop these ended jobs once their end is committed (never before:
        after a crash the agent's record is what a lost final state is rebuilt from), and
        their whole log written (a job with a log tail is forgotten when it completes).

        The ends of FORGET_GATHER seconds go in one ForgetJobs: one per commit was most of the
        frames to an agent running a burst of short jobs, and each frame wakes it."""
        ended = list(job_ids)

        def committed() -> None:
            ready = self._forget[agent.id]
            if not ready:
                asyncio.get_running_loop().call_later(FORGET_GATHER, self._send_forget, agent)
            ready.update(ended)

        self._jobs.store.after_commit(committed)

    def _send_forget(self, agent: Agent) -> None:
        ids = {job_id for job_id in self._forget.pop(agent.id, set()) if self._tails.pending(job_id) is None}
        if ids and agent.state is not AgentState.DEAD:
            agent.send([ForgetJobs(sorted(ids))])

    def drop_agent(self, agent: Agent) -> list[JobId]:
        """The agent is dead: the jobs whose log tail will never come (their readers wake)."""
        self._forget.pop(agent.id, None)
        return self._tails.drop_agent(agent.id)

