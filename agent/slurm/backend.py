"""SlurmBackend: the agent core's backend for jobs that run under Slurm (kind `sbatch`).

The core (`agent.core.AgentCore`) keeps every decision it makes for any job: messages, log
shipping, Hellos, forgetting. What is Slurm's is here: a run becomes a batch script queued for
`sbatch` (state `starting`, with the Slurm id, state and reason in the report's info), a
cancel becomes `scancel`, the end of a job is what Slurm says it is, and the walltime is
Slurm's to enforce. Each job's Slurm side (`SlurmJob`) lives here, beside the core's record.
Synchronous like the core: `SlurmQueue` does the awaiting and calls back here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobvisor.errors import JobvisorError
from jobvisor.protocol.agent_wire import RunJob
from jobvisor.reasons import exit_reason, walltime_exceeded
from jobvisor.resources import Resources
from jobvisor.states import JobState

from job_cmd.codes.base import Launch
from job_cmd.codes.registry import get_code

from agent import tail
from agent.backend import CoreEvents, Handle
from agent.jobs import Delegated, Ended, Ending, JobRecord
from agent.slurm import script as batch
from agent.slurm.commands import QueueEntry
from agent.slurm.queue import SlurmQueue
from agent.slurm.record import SlurmJob, Submit, scan
from agent.slurm.states import Phase, map_state, normalize

logger = logging.getLogger(__name__)

RAN = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"})  # had an allocation


def _keep_previous_log(job: JobRecord) -> None:
    """A new attempt in the same run dir: the previous one's output becomes output.N.log (a
    Slurm job of it that is still being canceled keeps writing there, not into the new log)."""
    previous = SlurmJob.load(job.run_dir)
    if previous is None or previous.job.attempt == job.attempt:
        return
    try:
        if os.stat(job.log_path).st_size or previous.slurm_job_id:
            os.replace(job.log_path, job.run_dir / f"output.{previous.job.attempt}.log")
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
        words = walltime_exceeded(walltime)
    elif state is JobState.FAILED and normalize(slurm_state) in ("FAILED", "") and returncode is not None:
        words = exit_reason(returncode)
    else:
        words = mapped_reason or str(state)
    return f"{words} ({slurm})"


class SlurmBackend:
    holds_slots = False  # Slurm queues the runs: one sent ahead is submitted at once
    acks_runs = True  # a job may wait in Slurm's queue for long before its first report
    still_there = "still in Slurm (agent {agent})"

    def __init__(self, queue: SlurmQueue, site: batch.SiteDefaults = batch.SiteDefaults()) -> None:
        self.queue = queue
        self.site = site
        self.core: CoreEvents | None = None
        self.sides: dict[JobRecord, SlurmJob] = {}  # the Slurm side of every job the core keeps
        queue.backend = self

    def bind(self, core: CoreEvents) -> None:
        self.core = core

    def side(self, job: JobRecord) -> SlurmJob:
        return self.sides[job]

    # ------------------------------------------------------------------ recovery

    def recover(self, run_root: Path, known: Callable[[str], bool]) -> list[JobRecord]:
        """The Slurm jobs an earlier agent of this user left in its run dirs, for the core to
        adopt before its first Hello (so the supervisor hears of them); `known`: whether the
        core has a job of that id already. Nothing is submitted twice: a job whose sbatch
        answer was lost is looked up in Slurm by its name."""
        found = []
        for side in scan(run_root):
            job = side.job
            if known(job.job_id):
                continue
            try:
                job.code_obj = get_code(job.code)
            except JobvisorError:
                job.code_obj = None
            self.sides[job] = side
            found.append(job)
            if job.is_terminal:
                job.phase = Ended(self.log_size(job))
            else:
                job.phase = Delegated()
                self.queue.adopt(side)
        return found

    # ------------------------------------------------------------------ JobBackend

    def new_record(self, msg: RunJob) -> JobRecord:
        run_dir = Path(msg.run_dir)  # relative: to the agent's work dir, its cwd
        job = JobRecord(job_id=msg.job_id, attempt=msg.attempt, code=msg.code,
                        run_dir=run_dir if run_dir.is_absolute() else Path.cwd() / run_dir)
        self.sides[job] = SlurmJob(job)
        return job

    def replace_live(self, existing: JobRecord) -> bool:
        if not existing.unwanted:
            return False
        # an attempt the supervisor gave up on (its agent was lost): cancel it, run the new one
        self.queue.cancel_detached(self.sides[existing])
        return True

    def prepare_ahead(self, run_dir: Path) -> None:
        return None  # never asked: runs are not held here (holds_slots is False)

    def prepare_run_dir(self, job: JobRecord, ahead: Any = None) -> None:
        self.queue.prepare_run_dir(job.run_dir)
        _keep_previous_log(job)

    def launch(self, job: JobRecord, launch: Launch, env: dict[str, str], resources: Resources) -> None:
        job.phase = Delegated()
        try:
            text = batch.render(job_id=job.job_id, attempt=job.attempt, run_dir=job.run_dir, argv=launch.argv,
                                env=env, resources=resources, site=self.site)
            self.queue.write_script(job, text)
        except batch.ScriptError as exc:
            return self.core.fail_to_start(job, str(exc))
        except Exception as exc:
            return self.core.prepare_failed(job, exc)
        job.set_state(JobState.STARTING, "waiting to be submitted to Slurm")
        self.core.write_status(job)
        self.queue.enqueue(self.sides[job])

    def stop(self, job: JobRecord, ending: Ending) -> None:
        """Cancel through Slurm (scancel); the end is reported when Slurm says it is over."""
        side = self.sides[job]
        logger.info("job %s attempt %d: canceling (%s)", job.job_id, job.attempt, ending[1])
        if side.submit is Submit.WAITING:  # never reached Slurm
            self.queue.unqueue(side)
            self.core.conclude(job, ending[0], ending[1], None)
            return
        side.cancel_requested = True
        self.core.write_status(job)
        self.queue.wake()

    def info(self, job: JobRecord) -> dict:
        side = self.sides.get(job)
        return side.info() if side is not None else {}

    def write_status(self, job: JobRecord) -> None:
        self.queue.write_status(self.sides[job])

    def log_size(self, job: JobRecord) -> int:
        return tail.log_size(job)

    def dropped(self, job: JobRecord) -> None:
        side = self.sides.pop(job, None)
        if side is not None and job.is_terminal and not side.forgotten:
            side.forgotten = True  # the supervisor has its end: a restarted agent ignores it
            try:
                self.queue.write_status(side)
            except OSError as exc:
                logger.warning("job %s: cannot write its status file: %s", job.job_id, exc)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        return self.queue.call_later(delay, callback)

    def kill_all(self, jobs: list[JobRecord]) -> None:
        self.queue.kill_all([self.sides[job] for job in jobs if job in self.sides])

    # ------------------------------------------------------------------ from the queue

    def on_waiting(self, side: SlurmJob, why: str) -> None:
        if side.slurm_reason != why:
            side.slurm_reason = why
            self.core.update(side.job)

    def on_submitting(self, side: SlurmJob) -> None:
        side.submit = Submit.SUBMITTING
        self.core.write_status(side.job)

    def on_submitted(self, side: SlurmJob, slurm_job_id: str) -> None:
        job = side.job
        side.submit = Submit.SUBMITTED
        side.slurm_job_id = slurm_job_id
        side.slurm_state = "PENDING"
        side.slurm_reason = ""
        side.submitted_at = time.time()
        job.reason = f"submitted to Slurm as job {slurm_job_id}"
        logger.info("job %s attempt %d: submitted as Slurm job %s", job.job_id, job.attempt, slurm_job_id)
        self.core.write_status(job)
        self.core.update(job)

    def on_submit_failed(self, side: SlurmJob, message: str) -> None:
        job = side.job
        if job.is_terminal:
            return
        live = job.live
        if live is not None and live.ending is not None and live.ending[0] is JobState.CANCELED:
            return self.core.conclude(job, JobState.CANCELED, live.ending[1], None)
        self.core.conclude(job, JobState.FAILED, f"sbatch refused the job: {message}", None)

    def on_slurm_state(self, side: SlurmJob, entry: QueueEntry) -> None:
        """squeue's view of a job that is not over."""
        job = side.job
        if job.is_terminal:
            return
        mapped = map_state(entry.state)
        changed = (entry.state, entry.reason, entry.nodes) != (side.slurm_state, side.slurm_reason, side.slurm_node)
        side.slurm_state, side.slurm_reason = entry.state, entry.reason
        side.slurm_node = entry.nodes if entry.nodes and "(" not in entry.nodes else side.slurm_node
        if mapped is None:
            logger.warning("job %s: unknown Slurm state %r of Slurm job %s", job.job_id, entry.state, side.slurm_job_id)
        elif mapped.phase is Phase.RUNNING and job.state is JobState.STARTING:
            job.started_at = time.time()
            job.set_state(JobState.RUNNING, f"running as Slurm job {side.slurm_job_id}" +
                          (f" on {side.slurm_node}" if side.slurm_node else ""), now=job.started_at)
            self.core.write_status(job)
            self.core.update(job)
            return
        if changed:
            self.core.write_status(job)
            self.core.update(job)

    def on_slurm_end(self, side: SlurmJob, slurm_state: str, slurm_reason: str, returncode: int | None) -> None:
        """Slurm says the job is over (or has forgotten it: `slurm_state` empty)."""
        job = side.job
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
            side.slurm_state = slurm_state
        side.slurm_reason = slurm_reason or side.slurm_reason
        if job.state is JobState.STARTING and normalize(slurm_state) in RAN:  # it ran between two polls
            job.started_at = time.time()
            job.set_state(JobState.RUNNING, f"ran as Slurm job {side.slurm_job_id}", now=job.started_at)
            self.core.update(job)
        reason = end_reason(state, slurm_state, slurm_reason, side.slurm_job_id, returncode, words, job.walltime)
        live = job.live
        if state is JobState.CANCELED and live is not None and live.ending is not None:
            reason = live.ending[1]
        self.core.conclude(job, state, reason, returncode)
