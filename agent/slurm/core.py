"""SlurmAgentCore: the agent core for jobs that run under Slurm (kind `sbatch`).

It keeps everything of `AgentCore` (messages, log shipping, hello, forget) and replaces what
differs: a run op writes a batch script and queues it for `sbatch` (state `starting`, with the
Slurm id, state and reason in the report's info), a cancel becomes `scancel`, the end of a
job is what Slurm says it is, and the walltime is Slurm's to enforce. Synchronous like its
base: `SlurmQueue` does the awaiting and calls back here.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from jobvisor.errors import JobvisorError
from jobvisor.protocol import Ack, CancelJob, JobReport, RunJob, StatusUpdate
from jobvisor.resources import Resources, format_walltime
from jobvisor.states import JobState

from job_cmd.codes.registry import get_code

from agent.core import AgentCore
from agent.jobs import signal_name
from agent.slurm import script as batch
from agent.slurm.commands import QueueEntry
from agent.slurm.record import SlurmJob, Submit, scan
from agent.slurm.states import Phase, map_state, normalize

logger = logging.getLogger(__name__)

RAN = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"})  # had an allocation


def _resources(data: Any) -> Resources:
    return Resources.from_wire(data) if isinstance(data, dict) else Resources()


def _keep_previous_log(job: SlurmJob) -> None:
    """A new attempt in the same run dir: the previous one's output becomes output.N.log (a
    Slurm job of it that is still being canceled keeps writing there, not into the new log)."""
    previous = SlurmJob.load(job.run_dir)
    if previous is None or previous.attempt == job.attempt:
        return
    try:
        if os.stat(job.log_path).st_size or previous.slurm_job_id:
            os.replace(job.log_path, job.run_dir / f"output.{previous.attempt}.log")
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("job %s: cannot keep the previous attempt's output: %s", job.job_id, exc)


def end_reason(state: JobState, slurm_state: str, slurm_reason: str, slurm_job_id: str,
               returncode: int | None, mapped_reason: str, walltime: float | None) -> str:
    """Why a Slurm job ended, in words, with Slurm's own state and reason verbatim."""
    slurm = f"Slurm job {slurm_job_id}: {slurm_state}" if slurm_state else f"Slurm job {slurm_job_id}"
    if slurm_reason and slurm_reason not in ("None", "(null)"):
        slurm += f", reason {slurm_reason}"
    if state is JobState.COMPLETED:
        return ""
    if state is JobState.TIMED_OUT and walltime and normalize(slurm_state) == "TIMEOUT":
        words = f"walltime of {format_walltime(walltime)} exceeded"
    elif state is JobState.FAILED and normalize(slurm_state) in ("FAILED", "") and returncode is not None:
        name = signal_name(-returncode) if returncode < 0 else ""
        words = f"exit code {returncode}" if returncode >= 0 else f"killed by {name}" if name.startswith("SIG") else f"ended by {name}"
    else:
        words = mapped_reason or str(state)
    return f"{words} ({slurm})"


class SlurmAgentCore(AgentCore):
    """`processes` is an `agent.slurm.queue.SlurmQueue`."""

    def __init__(self, *args, site: batch.SiteDefaults = batch.SiteDefaults(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.site = site

    # ------------------------------------------------------------------ recovery

    def recover(self, run_root: Path) -> int:
        """Adopt the Slurm jobs an earlier agent of this user left in its run dirs (before the
        first Hello, so the supervisor hears of them). Nothing is submitted twice: a job whose
        sbatch answer was lost is looked up in Slurm by its name."""
        found = 0
        for job in scan(run_root):
            if job.job_id in self.jobs:
                continue
            try:
                job.code_obj = get_code(job.code)
            except JobvisorError:
                job.code_obj = None
            self.jobs[job.job_id] = job
            found += 1
            if job.is_terminal:
                job.final_size = self.processes.log_size(job)
            else:
                self.processes.adopt(job)
        if found:
            logger.info("agent %s: found %d Slurm job(s) of an earlier agent in %s", self.agent_id, found, run_root)
        return found

    # ------------------------------------------------------------------ messages

    def on_run(self, msg: RunJob) -> None:
        existing = self.jobs.get(msg.job_id)
        if existing is not None:
            if existing.attempt == msg.attempt:  # a resent run: say again what we know
                self.comm.send(Ack(msg.job_id, msg.attempt))
                if not existing.is_terminal or existing.report_sent:
                    self.comm.send(StatusUpdate(existing.report()))
                return
            if not existing.is_terminal and existing.forget_when_done and isinstance(existing, SlurmJob):
                # an attempt the supervisor gave up on (its agent was lost): cancel it, run this one
                self.processes.cancel_detached(existing)
                super()._drop(existing)
            elif not existing.is_terminal:
                reason = f"attempt {existing.attempt} of this job is still in Slurm (agent {self.agent_id})"
                self.comm.send(StatusUpdate(JobReport(msg.job_id, msg.attempt, str(JobState.FAILED), reason, at=time.time())))
                return
            else:
                self._drop(existing)
        run_dir = Path(msg.run_dir)  # relative: to the agent's work dir, its cwd
        job = SlurmJob(job_id=msg.job_id, attempt=msg.attempt, code=msg.code,
                       run_dir=run_dir if run_dir.is_absolute() else Path.cwd() / run_dir)
        self.jobs[job.job_id] = job
        self.comm.send(Ack(job.job_id, job.attempt))
        try:
            resources = _resources(msg.resources)
            job.walltime = resources.walltime
            job.code_obj = code = get_code(msg.code)
            self.processes.prepare_run_dir(job.run_dir)
            _keep_previous_log(job)
            launch = code.launch(msg.params, job.run_dir, resources)
            env = dict(launch.env)
            env.update(
                JOBVISOR_JOB_ID=job.job_id, JOBVISOR_ATTEMPT=str(job.attempt),
                JOBVISOR_RUN_DIR=str(job.run_dir), JOBVISOR_PROGRESS_FILE=str(job.progress_path),
            )
            text = batch.render(job_id=job.job_id, attempt=job.attempt, run_dir=job.run_dir, argv=launch.argv,
                                env=env, resources=resources, site=self.site)
            self.processes.write_script(job, text)
        except batch.ScriptError as exc:
            return self._fail_to_start(job, str(exc))
        except Exception as exc:  # a plugin's bug must fail the job, not the agent
            return self._prepare_failed(job, msg, exc)
        job.set_state(JobState.STARTING, "waiting to be submitted to Slurm")
        self._write_status(job)
        self.processes.enqueue(job)

    def on_cancel(self, msg: CancelJob) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None or job.is_terminal or job.ending is not None:
            return
        self._terminate(job, (JobState.CANCELED, msg.reason))

    _handlers = {**AgentCore._handlers, RunJob: on_run, CancelJob: on_cancel}

    def _terminate(self, job, ending: tuple[JobState, str]) -> None:
        """Cancel through Slurm (scancel); the end is reported when Slurm says it is over."""
        job.ending = ending
        if not isinstance(job, SlurmJob):
            return
        logger.info("job %s attempt %d: canceling (%s)", job.job_id, job.attempt, ending[1])
        if job.submit is Submit.WAITING:  # never reached Slurm
            self.processes.unqueue(job)
            self._end(job, ending[0], ending[1], None)
            return
        job.cancel_requested = True
        self._write_status(job)
        self.processes.wake()

    def _drop(self, job) -> None:
        if isinstance(job, SlurmJob) and job.is_terminal and not job.forgotten:
            job.forgotten = True  # the supervisor has its end: a restarted agent ignores it
            self._write_status(job)
        super()._drop(job)

    # ------------------------------------------------------------------ from the queue

    def on_waiting(self, job: SlurmJob, why: str) -> None:
        if job.slurm_reason != why:
            job.slurm_reason = why
            self._send_update(job)

    def on_submitting(self, job: SlurmJob) -> None:
        job.submit = Submit.SUBMITTING
        self._write_status(job)

    def on_submitted(self, job: SlurmJob, slurm_job_id: str) -> None:
        job.submit = Submit.SUBMITTED
        job.slurm_job_id = slurm_job_id
        job.slurm_state = "PENDING"
        job.slurm_reason = ""
        job.submitted_at = time.time()
        job.reason = f"submitted to Slurm as job {slurm_job_id}"
        logger.info("job %s attempt %d: submitted as Slurm job %s", job.job_id, job.attempt, slurm_job_id)
        self._write_status(job)
        self._send_update(job)

    def on_submit_failed(self, job: SlurmJob, message: str) -> None:
        if job.is_terminal:
            return
        if job.ending is not None and job.ending[0] is JobState.CANCELED:
            return self._end(job, JobState.CANCELED, job.ending[1], None)
        self._end(job, JobState.FAILED, f"sbatch refused the job: {message}", None)

    def on_slurm_state(self, job: SlurmJob, entry: QueueEntry) -> None:
        """squeue's view of a job that is not over."""
        if job.is_terminal:
            return
        mapped = map_state(entry.state)
        changed = (entry.state, entry.reason, entry.nodes) != (job.slurm_state, job.slurm_reason, job.slurm_node)
        job.slurm_state, job.slurm_reason = entry.state, entry.reason
        job.slurm_node = entry.nodes if entry.nodes and "(" not in entry.nodes else job.slurm_node
        if mapped is None:
            logger.warning("job %s: unknown Slurm state %r of Slurm job %s", job.job_id, entry.state, job.slurm_job_id)
        elif mapped.phase is Phase.RUNNING and job.state is JobState.STARTING:
            job.started_at = time.time()
            job.set_state(JobState.RUNNING, f"running as Slurm job {job.slurm_job_id}" +
                          (f" on {job.slurm_node}" if job.slurm_node else ""), now=job.started_at)
            self._write_status(job)
            self._send_update(job)
            return
        if changed:
            self._write_status(job)
            self._send_update(job)

    def on_slurm_end(self, job: SlurmJob, slurm_state: str, slurm_reason: str, returncode: int | None) -> None:
        """Slurm says the job is over (or has forgotten it: `slurm_state` empty)."""
        if job.is_terminal:
            return
        mapped = map_state(slurm_state) if slurm_state else None
        if mapped is not None and mapped.phase is Phase.ENDED:
            state, words = mapped.state, mapped.reason
        elif returncode is not None:  # Slurm forgot it, the script left its exit code
            state, words = (JobState.COMPLETED if returncode == 0 else JobState.FAILED), ""
        else:
            state = JobState.LOST
            words = "Slurm no longer knows the job and it left no exit code"
        if slurm_state:
            job.slurm_state = slurm_state
        job.slurm_reason = slurm_reason or job.slurm_reason
        if job.state is JobState.STARTING and normalize(slurm_state) in RAN:  # it ran between two polls
            job.started_at = time.time()
            job.set_state(JobState.RUNNING, f"ran as Slurm job {job.slurm_job_id}", now=job.started_at)
            self._send_update(job)
        reason = end_reason(state, slurm_state, slurm_reason, job.slurm_job_id, returncode, words, job.walltime)
        if state is JobState.CANCELED and job.ending is not None:
            reason = job.ending[1]
        self._end(job, state, reason, returncode)

    # ------------------------------------------------------------------ endings

    def _end(self, job: SlurmJob, state: JobState, reason: str, returncode: int | None) -> None:
        job.cancel_timers()
        self._conclude(job, state, reason, returncode)

    def _send_update(self, job: SlurmJob) -> None:
        if self.comm.linked():
            self.comm.send(StatusUpdate(job.report()))
