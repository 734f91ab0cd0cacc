"""The agent's synchronous core: the job table and every decision about it.

The socket loop decodes a message and calls `AgentCore.handle`; the runner calls `on_exit` when
a process ends; a timer calls `poll` to ship output and progress. Nothing here awaits, so no
other coroutine can interleave halfway through a transition. Side effects go through two small
objects, so a test can drive the core against recording fakes:

* `Comm`: queue a message to the supervisor, say whether logs may be sent now, run an op, stop.
* `Processes` (`agent.runner.Runner`): make run dirs, spawn, signal, timers, status files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from jobvisor.config import AgentConfig
from jobvisor.errors import JobvisorError
from jobvisor.protocol import (
    Ack, AnalysisRequest, CancelJob, ErrorMessage, ForgetJobs, HelloAck, IoRequest, JobReport, KillAgent,
    LogChunk, Message, OpReply, Progress, RunJob, StartPrefetched, StatusRequest, StatusUpdate, to_wire,
)
from jobvisor.resources import Resources, parse_walltime
from jobvisor.states import JobState

from job_cmd.codes.base import Code, Launch
from job_cmd.codes.registry import get_code
from job_cmd.fsutil import META_DIR, PROGRESS_FILE

from agent import ops, tail
from agent.jobs import JobRecord, exit_outcome, walltime_reason

logger = logging.getLogger(__name__)

# A job's status file (what a restarted agent or a person finds on disk) is written once the job
# has run this long, and then at its end. A job that ends sooner is reported to the supervisor
# at once and leaves none: for a burst of short jobs that file was one more inode to create per
# job, and on a file system without a journal creating one can cost as much as the spawn.
STATUS_FILE_DELAY = 0.5  # seconds


class Comm(Protocol):
    def send(self, message: Message) -> None:
        """Queue a message for the supervisor (dropped while disconnected: Hello re-announces)."""

    def linked(self) -> bool:
        """Connected and the Hello acknowledged: reports may be sent."""

    def log_ready(self) -> bool:
        """Linked, and the send buffer is not congested: log bytes may be sent."""

    def run_op(self, op_id: str, make_reply: Callable[[], Awaitable[OpReply]]) -> None:
        """Run an op off the core and send its reply."""

    def stop(self, reason: str, cancel_jobs: bool) -> None:
        """Shut the agent down (KillAgent)."""


class Handle(Protocol):
    def cancel(self) -> None: ...


class Processes(Protocol):
    def prepare_ahead(self, run_dir: Path) -> Any:
        """Start making the run dir of a job that starts later; a token for prepare_run_dir."""

    def prepare_run_dir(self, run_dir: Path, ahead: Any = None) -> None:
        """Make the run dir (or finish what `prepare_ahead` began); OSError if it cannot."""

    def spawn(self, job: JobRecord, launch: Launch, env: dict[str, str], done: Callable[[OSError | None], None]) -> None:
        """Start the job's process; set job.pid, job.process, job.log_fd, then call `done` on
        the loop (with the OSError if it could not start); later call the exit callback with
        the job and its return code. May raise OSError at once (the log cannot be opened)."""

    def signal_group(self, job: JobRecord, sig: int) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle: ...

    def write_status(self, job: JobRecord) -> None: ...

    def log_size(self, job: JobRecord) -> int: ...


class AgentCore:
    def __init__(
        self,
        agent_id: str,
        config: AgentConfig,
        comm: Comm,
        processes: Processes,
        *,
        io_timeout: float = 30.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        op_env: dict[str, str] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.config = config
        self.comm = comm
        self.processes = processes
        self.io_timeout = io_timeout
        self.max_message_bytes = max_message_bytes
        self.op_env = op_env  # environment of analysis subprocesses
        self.jobs: dict[str, JobRecord] = {}
        # jobs sent ahead (RunJob.prefetched), started FIFO as started jobs end; see RunJob's docstring
        self.prefetched: OrderedDict[str, RunJob] = OrderedDict()
        self._poll_start = 0  # rotates, so a congested link does not starve the later jobs

    # ------------------------------------------------------------------ queries

    def has_running(self) -> bool:
        return any(not job.is_terminal for job in self.jobs.values())

    def all_reported(self) -> bool:
        return all(job.report_sent or job.forget_when_done for job in self.jobs.values() if job.is_terminal)

    def hello_reports(self) -> list[JobReport]:
        """Every running job and every terminal one not yet forgotten, for a Hello.

        A job that ended while the link was down and has output is announced as still running:
        a supervisor takes a terminal state as final and drops log bytes that come after it, so
        the end is reported after the log (`poll` -> `_finish`), moments after the HelloAck."""
        reports = []
        for job in self.jobs.values():
            if job.forget_when_done:
                continue
            if job.is_terminal and not job.report_sent and (job.final_size or 0) > 0:
                reports.append(dataclasses.replace(job.report(), state=str(JobState.RUNNING), reason="",
                                                   exit_code=None, result=None))
                continue
            if job.is_terminal:
                job.report_sent = True
            reports.append(job.report())
        return reports

    # ------------------------------------------------------------------ messages

    def handle(self, message: Message) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            logger.warning("agent %s: no handler for message %s", self.agent_id, message.TYPE)
            self.comm.send(ErrorMessage(f"the agent does not handle {message.TYPE!r} messages", ref_type=message.TYPE))
            return
        handler(self, message)

    def on_run(self, msg: RunJob) -> None:
        existing = self.jobs.get(msg.job_id)
        if existing is not None:
            if existing.attempt == msg.attempt:  # a resent run: say again what we know
                logger.info("job %s attempt %d: run received again, ignored", msg.job_id, msg.attempt)
                self.comm.send(Ack(msg.job_id, msg.attempt))
                if not existing.is_terminal or existing.report_sent:
                    self.comm.send(StatusUpdate(existing.report()))
                return
            if not existing.is_terminal:
                reason = f"attempt {existing.attempt} of this job is still running on agent {self.agent_id}"
                logger.warning("job %s attempt %d refused: %s", msg.job_id, msg.attempt, reason)
                self.comm.send(StatusUpdate(JobReport(msg.job_id, msg.attempt, str(JobState.FAILED), reason, at=time.time())))
                return
            self._drop(existing)
        job = JobRecord(job_id=msg.job_id, attempt=msg.attempt, code=msg.code, run_dir=Path(msg.run_dir))
        self.jobs[job.job_id] = job
        if msg.prefetched:
            job.prefetched = True
            job.ahead = self.processes.prepare_ahead(job.run_dir)
            self.prefetched[job.job_id] = msg
            return
        self._start(job, msg)

    def on_start_prefetched(self, msg: StartPrefetched) -> None:
        if msg.job_id in self.prefetched:
            self._start_prefetched(self.prefetched.pop(msg.job_id))

    def _start_next_prefetched(self) -> None:
        """A started job ended: its slot passes to the oldest prefetched job."""
        if self.prefetched:
            self._start_prefetched(self.prefetched.popitem(last=False)[1])

    def _start_prefetched(self, msg: RunJob) -> None:
        job = self.jobs.get(msg.job_id)
        if job is not None and job.prefetched and job.attempt == msg.attempt:
            job.prefetched = False
            self._start(job, msg)

    def _start(self, job: JobRecord, msg: RunJob) -> None:
        job.slotted = True
        try:
            walltime = msg.resources.get("walltime") if isinstance(msg.resources, dict) else None
            job.walltime = None if walltime is None else parse_walltime(walltime)
            job.code_obj = code = get_code(msg.code)
            ahead, job.ahead = job.ahead, None
            self.processes.prepare_run_dir(job.run_dir, ahead)
            launch = code.launch(msg.params, job.run_dir, _resources(msg.resources))
        except Exception as exc:  # a plugin's bug must fail the job, not the agent
            return self._prepare_failed(job, msg, exc)
        env = dict(launch.env)
        env.update(
            JOBVISOR_JOB_ID=job.job_id,
            JOBVISOR_ATTEMPT=str(job.attempt),
            JOBVISOR_RUN_DIR=job.run_path,
            JOBVISOR_PROGRESS_FILE=job.progress_path,
        )
        job.spawning = True
        try:
            self.processes.spawn(job, launch, env, lambda error: self._spawned(job, launch, error))
        except OSError as exc:
            job.spawning = False
            return self._fail_to_start(job, f"cannot start {launch.argv[0]!r}: {exc.strerror or exc}")

    def _prepare_failed(self, job: JobRecord, msg: RunJob, exc: Exception) -> None:
        """Fail a job whose launch could not be prepared, with a reason the user can act on
        (called from an except block: an unexpected error is logged with its traceback)."""
        if isinstance(exc, JobvisorError):
            reason = str(exc)
        elif isinstance(exc, OSError):
            reason = f"cannot prepare run dir {msg.run_dir}: {exc.strerror or exc}"
        else:
            logger.exception("job %s: code %s failed to prepare its launch", job.job_id, msg.code)
            reason = f"code {msg.code!r} failed to prepare the run: {type(exc).__name__}: {exc}"
        self._fail_to_start(job, reason)

    def _spawned(self, job: JobRecord, launch: Launch, error: OSError | None) -> None:
        """The fork/exec finished (in a worker thread, so the loop never waits on it)."""
        job.spawning = False
        if error is not None:
            return self._fail_to_start(job, f"cannot start {launch.argv[0]!r}: {error.strerror or error}")
        if job.ending is not None:  # canceled (or the agent stopped) while it was being started
            self.processes.signal_group(job, signal.SIGTERM)
        job.started_at = time.time()
        job.set_state(JobState.RUNNING, now=job.started_at)
        logger.debug("job %s attempt %d: running %s as pid %d", job.job_id, job.attempt, launch.argv[0], job.pid)
        # The status file is written only for jobs still running a moment later (see
        # STATUS_FILE_DELAY), by `poll`: most of a burst of short jobs end first, and no timer
        # is made and cancelled for each of them.
        job.status_due = job.started_at + STATUS_FILE_DELAY
        self.comm.send(StatusUpdate(job.report()))
        if job.walltime is not None:
            job.timers.append(self.processes.call_later(job.walltime, lambda: self._on_walltime(job)))

    def on_cancel(self, msg: CancelJob) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None or job.is_terminal or job.ending is not None:
            return  # unknown, finished or already being stopped: nothing to do
        if job.prefetched:  # never started: it holds no slot, so no prefetched job starts in its place
            self.prefetched.pop(job.job_id, None)
            job.prefetched = False
            job.finished_at = time.time()
            job.final_size = 0
            job.set_state(JobState.CANCELED, msg.reason, now=job.finished_at)
            self._finish(job)
            return
        logger.info("job %s attempt %d: canceling (%s)", job.job_id, job.attempt, msg.reason)
        self._terminate(job, (JobState.CANCELED, msg.reason))

    def on_status(self, msg: StatusRequest) -> None:
        jobs = [to_wire(job.report()) for job in self.jobs.values() if not job.forget_when_done]
        self.comm.send(OpReply(msg.op_id, True, data={"jobs": jobs}))

    # Ops run in threads and subprocesses: their run dir is made absolute here, on the loop,
    # because the runner changes the agent's working directory for an instant at each spawn.
    def on_io(self, msg: IoRequest) -> None:
        msg = dataclasses.replace(msg, run_dir=os.path.abspath(msg.run_dir))
        self.comm.run_op(msg.op_id, lambda: ops.io_reply(msg, self.io_timeout))

    def on_analysis(self, msg: AnalysisRequest) -> None:
        msg = dataclasses.replace(msg, run_dir=os.path.abspath(msg.run_dir))
        self.comm.run_op(msg.op_id, lambda: ops.analysis_reply(msg, env=self.op_env, max_bytes=self.max_message_bytes // 2))

    def on_kill(self, msg: KillAgent) -> None:
        logger.info("agent %s: kill requested (%s), cancel jobs: %s", self.agent_id, msg.reason, msg.cancel_jobs)
        self.comm.stop(msg.reason or "agent killed", msg.cancel_jobs)

    def on_forget(self, msg: ForgetJobs) -> None:
        for job_id in msg.job_ids:
            job = self.jobs.get(job_id)
            if job is not None and job.is_terminal:  # a running job here is a newer attempt: keep it
                self._drop(job)

    def on_hello_ack(self, msg: HelloAck) -> None:
        offsets = msg.log_offsets if isinstance(msg.log_offsets, dict) else {}
        for job_id in msg.forget:
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if job.is_terminal:
                self._drop(job)
            else:
                logger.warning("job %s attempt %d: the supervisor does not want it, canceling", job.job_id, job.attempt)
                job.forget_when_done = True
                if job.ending is None:
                    self._terminate(job, (JobState.CANCELED, "the supervisor forgot this job"))
        for job in self.jobs.values():
            offset = offsets.get(job.job_id, 0)
            offset = offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else 0
            if job.final_size is not None:
                offset = min(offset, job.final_size)
            job.sent_offset = offset
        self.poll()

    def on_error(self, msg: ErrorMessage) -> None:
        logger.warning("agent %s: the supervisor reports an error about our %r: %s", self.agent_id, msg.ref_type, msg.detail)

    _handlers: dict[type, Callable[["AgentCore", Any], None]] = {
        RunJob: on_run, StartPrefetched: on_start_prefetched, CancelJob: on_cancel, StatusRequest: on_status, IoRequest: on_io,
        AnalysisRequest: on_analysis, KillAgent: on_kill, ForgetJobs: on_forget, HelloAck: on_hello_ack,
        ErrorMessage: on_error,
    }

    # ------------------------------------------------------------------ stopping

    def cancel_all(self, reason: str) -> None:
        for msg in list(self.prefetched.values()):  # prefetched ones first, so none starts as others end
            self.on_cancel(CancelJob(msg.job_id, reason))
        for job in list(self.jobs.values()):
            if not job.is_terminal and job.ending is None:
                self._terminate(job, (JobState.CANCELED, reason))

    def _terminate(self, job: JobRecord, ending: tuple[JobState, str]) -> None:
        """SIGTERM the job's process group now, SIGKILL after cancel_grace; the exit callback
        then reports `ending`."""
        job.ending = ending
        self.processes.signal_group(job, signal.SIGTERM)

        def kill() -> None:
            if not job.is_terminal:
                logger.info("job %s: still alive after %.1fs, SIGKILL", job.job_id, self.config.cancel_grace)
                self.processes.signal_group(job, signal.SIGKILL)

        job.timers.append(self.processes.call_later(self.config.cancel_grace, kill))

    def _on_walltime(self, job: JobRecord) -> None:
        if job.is_terminal or job.ending is not None:
            return
        reason = walltime_reason(job.walltime or 0)
        logger.info("job %s attempt %d: %s, stopping it", job.job_id, job.attempt, reason)
        self._terminate(job, (JobState.TIMED_OUT, reason))

    # ------------------------------------------------------------------ endings

    def on_exit(self, job: JobRecord, returncode: int) -> None:
        """The job's process ended (called by the runner once, after reaping it).

        The freed slot goes to the next prefetched job first, the bookkeeping of this one after: under
        a burst of short jobs the time from one job's end to the next one's start is time the
        slot's cpu is not running a job."""
        self._start_next_prefetched()
        job.cancel_timers()
        job.process = None
        names = tail.few_names(job.run_path)  # None: too many to look through, so probe
        if names is None or PROGRESS_FILE in names:
            self._poll_progress(job)  # its last report (often 100%) goes before its end
        state, reason = exit_outcome(returncode, job.ending)
        self._conclude(job, state, reason, returncode, quiet=True, names=names)  # thousands of short jobs a second

    def _conclude(self, job: JobRecord, state: JobState, reason: str, returncode: int | None, quiet: bool = False,
                  names: set[str] | None = None) -> None:
        """Record an attempt's end (exit code, result when completed, end time, final log size),
        write its status file, then report it (or drop it if the supervisor forgot it).
        `names`: the run dir's entries when known, so that a code reading its result the
        default way is not asked for one where no META_DIR exists."""
        job.exit_code = returncode
        code = job.code_obj
        if state is JobState.COMPLETED and code is not None:
            if names is None or META_DIR in names or type(code).result is not Code.result:
                try:
                    job.result = code.result(job.run_dir)
                except (OSError, ValueError) as exc:
                    reason = f"the result file could not be read: {exc}"
        job.finished_at = time.time()
        job.final_size = self.processes.log_size(job)
        job.set_state(state, reason, now=job.finished_at)
        log = logger.debug if quiet and state is JobState.COMPLETED else logger.info
        log("job %s attempt %d: %s%s", job.job_id, job.attempt, state, f" ({reason})" if reason else "")
        if job.status_written:  # never leave a stale one; a job that ended sooner leaves none
            self._write_status(job)
        if job.forget_when_done:
            self._drop(job)
        else:
            self._finish(job)

    def _fail_to_start(self, job: JobRecord, reason: str) -> None:
        logger.warning("job %s attempt %d: failed to start: %s", job.job_id, job.attempt, reason)
        job.finished_at = time.time()
        job.final_size = 0
        job.set_state(JobState.FAILED, reason, now=job.finished_at)
        if job.run_dir.is_dir():
            self._write_status(job)
        self._finish(job)
        if job.slotted:
            # on the next turn, not from here: when every prefetched job fails at once (a program
            # that does not exist), starting each from the previous one's failure would nest
            # one call chain per prefetched job, and enough of them overflow the stack
            self.processes.call_later(0, self._start_next_prefetched)

    def _finish(self, job: JobRecord) -> None:
        """Ship what remains of a terminal job's log, then its report (when the link allows)."""
        if job.log_pending:
            if not self.comm.log_ready():
                return
            self._ship_log(job)
            if job.log_pending:
                return
        job.close_log()
        if not job.report_sent and self.comm.linked():
            job.report_sent = True
            self.comm.send(StatusUpdate(job.report()))

    def _drop(self, job: JobRecord) -> None:
        job.cancel_timers()
        job.close_log()
        if self.jobs.get(job.job_id) is job:
            del self.jobs[job.job_id]

    def _write_status(self, job: JobRecord) -> None:
        try:
            self.processes.write_status(job)
        except OSError as exc:
            logger.warning("job %s: cannot write its status file: %s", job.job_id, exc)
        else:
            job.status_written = True

    # ------------------------------------------------------------------ output and progress

    def poll(self) -> None:
        """Ship new output (at most max_log_chunk per job) and progress; write the status file
        of a job that has run for STATUS_FILE_DELAY; finish drained jobs."""
        # prefetched jobs have not started: no output or progress yet
        jobs = [job for job in self.jobs.values() if not job.prefetched and (job.log_pending or not job.report_sent)]
        if not jobs:
            return
        start = self._poll_start % len(jobs)
        self._poll_start += 1
        now = time.time()
        for job in jobs[start:] + jobs[:start]:
            if job.forget_when_done and job.is_terminal:
                continue
            if not job.is_terminal:
                if job.status_due is not None and now >= job.status_due:
                    job.status_due = None
                    self._write_status(job)
                self._poll_progress(job)
                if self.comm.log_ready():
                    self._ship_log(job)
            else:
                self._finish(job)

    def _ship_log(self, job: JobRecord) -> None:
        limit = job.final_size if job.is_terminal else None
        try:
            data = tail.read_new(job, self.config.max_log_chunk, limit)
        except OSError as exc:
            logger.warning("job %s: cannot read its output log: %s", job.job_id, exc)
            if job.is_terminal:  # nothing more can be sent: report what we have
                job.final_size = job.sent_offset
            return
        if data:
            self.comm.send(LogChunk(job.job_id, job.attempt, job.sent_offset, data))
            job.sent_offset += len(data)

    def _poll_progress(self, job: JobRecord) -> None:
        report = tail.read_progress_if_changed(job)
        if report is not None:
            self.comm.send(Progress(job.job_id, job.attempt, report.fraction, report.message))


def _resources(data: Any) -> Resources:
    if not isinstance(data, dict):
        return Resources()
    try:
        return Resources.parse(data)
    except JobvisorError:
        return Resources.from_wire(data)
