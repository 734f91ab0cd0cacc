"""The local backend of the agent's core: each job is a child process of the agent (spawned by
`agent.runner.Runner`, the `Processes` here), stopped by signalling its process group, ended
when the runner reaps it. Runs sent ahead wait in the core for one of the agent's slots."""

from __future__ import annotations

import errno
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from jobvisor.protocol.agent_wire import RunJob
from jobvisor.reasons import walltime_exceeded
from jobvisor.resources import Resources
from jobvisor.states import JobState

from job_cmd.codes.base import Launch
from job_cmd.fsutil import PROGRESS_FILE

from agent import tail
from agent.backend import CoreEvents, Handle
from agent.jobs import Ending, JobRecord, Running, Spawning, exit_outcome
from agent.job_limits import JobLimits
from agent.oom import OomCounter

logger = logging.getLogger(__name__)

# A job's status file (what a restarted agent or a person finds on disk) is written once the job
# has run this long, and then at its end. A job that ends sooner is reported to the supervisor
# at once and leaves none: for a burst of short jobs that file was one more inode to create per
# job, and on a file system without a journal creating one can cost as much as the spawn.
STATUS_FILE_DELAY = 0.5  # seconds


def cannot_start(program: str, exc: BaseException) -> str:
    """The reason of a job whose program did not start; a relative path that is not there gets
    a hint, since the job runs in its own run dir, where only its inputs are."""
    why = getattr(exc, "strerror", None) or str(exc)
    reason = f"cannot start {program!r}: {why}"
    if getattr(exc, "errno", None) == errno.ENOENT and "/" in program and not program.startswith("/"):
        reason += (" in the job's run dir (make it an input: jobvisor submit --input, a workflow job's inputs;"
                   " or give an absolute path)")
    return reason


class Processes(Protocol):
    """Spawning and signalling processes (`agent.runner.Runner`; a recording fake in tests)."""

    def prepare_ahead(self, run_dir: Path) -> Any:
        """Start making the run dir of a job that starts later; a token for prepare_run_dir."""

    def prepare_run_dir(self, run_dir: Path, ahead: Any = None) -> None:
        """Make the run dir (or finish what `prepare_ahead` began); OSError if it cannot."""

    def spawn(self, job: JobRecord, launch: Launch, env: dict[str, str], done: Callable[[Any], None]) -> None:
        """Start the job's process (setting job.log_fd when it opens the log), then call `done`
        on the loop with the child (`.pid`) or the OSError that kept it from starting; once the
        child is reaped, call the exit callback with the job and its return code. May raise
        OSError at once (the log cannot be opened)."""

    def signal_group(self, job: JobRecord, sig: int) -> None:
        """Signal the job's process group, if its process runs (a no-op otherwise)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle: ...

    def write_status(self, job: JobRecord) -> None: ...

    def log_size(self, job: JobRecord) -> int: ...

    def kill_all(self, jobs: list[JobRecord]) -> None: ...


class LocalBackend:
    holds_slots = True
    acks_runs = False  # the first report (running, moments later) acknowledges the run
    still_there = "still running on agent {agent}"

    def __init__(self, processes: Processes, cancel_grace: float, oom: OomCounter | None = None,
                 limits: JobLimits | None = None) -> None:
        self.processes = processes
        self.cancel_grace = cancel_grace
        self.oom = oom  # in a container: tells out-of-memory kills apart
        self.limits = limits  # the local driver's: each job's memory and cpus
        self.core: CoreEvents | None = None

    def bind(self, core: CoreEvents) -> None:
        self.core = core

    # ------------------------------------------------------------------ starting

    def new_record(self, msg: RunJob) -> JobRecord:
        return JobRecord(job_id=msg.job_id, attempt=msg.attempt, code=msg.code, run_dir=Path(msg.run_dir),
                         workdir=msg.workdir)

    def replace_live(self, existing: JobRecord) -> bool:
        return False  # two attempts of one job never run side by side here

    def prepare_ahead(self, run_dir: Path) -> Any:
        return self.processes.prepare_ahead(run_dir)

    def prepare_run_dir(self, job: JobRecord, ahead: Any = None) -> None:
        self.processes.prepare_run_dir(job.run_dir, ahead)

    def launch(self, job: JobRecord, launch: Launch, env: dict[str, str], resources: Resources) -> None:
        job.phase = Spawning()
        try:
            self.processes.spawn(job, launch, env, lambda result: self._spawned(job, launch, result, resources))
        except OSError as exc:
            self.core.fail_to_start(job, cannot_start(launch.argv[0], exc))

    def _spawned(self, job: JobRecord, launch: Launch, result: Any, resources: Resources | None = None) -> None:
        """The fork/exec finished (perhaps in a worker thread, so the loop never waits on it)."""
        spawning = job.phase
        if not isinstance(spawning, Spawning):  # cannot happen: only a start ends a Spawning phase
            logger.error("job %s: its fork/exec finished in phase %s", job.job_id, type(spawning).__name__)
            return
        if isinstance(result, BaseException):
            return self.core.fail_to_start(job, cannot_start(launch.argv[0], result))
        job.pid = result.pid
        if self.limits is not None and resources is not None:
            self.limits.apply(job, resources)
        job.phase = running = Running(spawning.ending, spawning.forget, spawning.timers, result)
        if running.ending is not None:  # canceled (or the agent stopped) while it was being started
            self.processes.signal_group(job, signal.SIGTERM)
        job.started_at = now = time.time()
        logger.debug("job %s attempt %d: running %s as pid %d", job.job_id, job.attempt, launch.argv[0], job.pid)
        # The status file is written only for jobs still running a moment later (see
        # STATUS_FILE_DELAY), by the core's poll: most of a burst of short jobs end first, and
        # no timer is made and cancelled for each of them.
        running.status_due = now + STATUS_FILE_DELAY
        self.core.running(job, now=now)
        if job.walltime is not None:
            running.timers.append(self.processes.call_later(job.walltime, lambda: self._on_walltime(job)))

    # ------------------------------------------------------------------ stopping

    def stop(self, job: JobRecord, ending: Ending) -> None:
        """SIGTERM the job's process group now, SIGKILL after cancel_grace; the exit then
        reports `ending`."""
        self.processes.signal_group(job, signal.SIGTERM)

        def kill() -> None:
            if not job.is_terminal:
                logger.info("job %s: still alive after %.1fs, SIGKILL", job.job_id, self.cancel_grace)
                self.processes.signal_group(job, signal.SIGKILL)

        job.live.timers.append(self.processes.call_later(self.cancel_grace, kill))

    def _on_walltime(self, job: JobRecord) -> None:
        live = job.live
        if live is None or live.ending is not None:
            return
        reason = walltime_exceeded(job.walltime or 0)
        logger.info("job %s attempt %d: %s, stopping it", job.job_id, job.attempt, reason)
        live.ending = ending = (JobState.TIMED_OUT, reason)
        self.stop(job, ending)

    def kill_all(self, jobs: list[JobRecord]) -> None:
        self.processes.kill_all(jobs)

    # ------------------------------------------------------------------ the end

    def on_exit(self, job: JobRecord, returncode: int) -> None:
        """The job's process ended (called by the runner once, after reaping it).

        The freed slot goes to the next prefetched job first, the bookkeeping of this one after:
        under a burst of short jobs the time from one job's end to the next one's start is time
        the slot's cpu is not running a job."""
        core = self.core
        core.slot_freed()
        live = job.live
        ending = live.ending if live is not None else None
        if self.limits is not None:
            out_of_memory = self.limits.finish(job, returncode)
            if ending is None and out_of_memory is not None:
                ending = (JobState.FAILED, out_of_memory)
        if ending is None and self.oom is not None:
            reason = self.oom.explain(returncode)
            if reason is not None:
                ending = (JobState.FAILED, reason)
        names = tail.few_names(job.run_path)  # None: too many to look through, so probe
        if names is None or PROGRESS_FILE in names:
            core.poll_progress(job)  # its last report (often 100%) goes before its end
        state, reason = exit_outcome(returncode, ending)
        core.conclude(job, state, reason, returncode, quiet=True, names=names)  # thousands of short jobs a second

    # ------------------------------------------------------------------ the rest

    def info(self, job: JobRecord) -> dict:
        info: dict = {"pid": job.pid} if job.pid is not None else {}
        return {**info, **job.usage} if job.usage else info

    def write_status(self, job: JobRecord) -> None:
        self.processes.write_status(job)

    def log_size(self, job: JobRecord) -> int:
        return self.processes.log_size(job)

    def dropped(self, job: JobRecord) -> None:
        pass

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        return self.processes.call_later(delay, callback)
