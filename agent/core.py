"""The agent's synchronous core: the job table and every decision about it.

The socket loop decodes a message and calls `AgentCore.handle`; the backend (`agent.backend`)
calls back when a job starts running or ends; a timer calls `poll` to ship output and progress.
Nothing here awaits, so no other coroutine can interleave halfway through a transition. Side
effects go through two small objects, so a test can drive the core against recording fakes:

* `Comm`: queue a message to the supervisor, say whether logs may be sent now, run an op, stop.
* `JobBackend`: how jobs run (child processes: `agent.local`; Slurm: `agent.slurm.backend`).

A job's phase (`agent.jobs`) carries what only means something in it: a prefetched job its
run message, a running one its process and timers, an ended one its final log size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from jobvisor import env_names
from jobvisor.config import AgentConfig
from jobvisor.errors import InvalidRequest, JobvisorError
from jobvisor.limits import MAX_MESSAGE_BYTES, analysis_result_limit
from jobvisor.codec import Message, to_wire
from jobvisor.protocol.agent_wire import (
    Ack, AnalysisRequest, CancelJob, ErrorMessage, ForgetJobs, HelloAck, InputChunk, IoRequest, JobReport, KillAgent,
    LogChunk, OpReply, Progress, RunJob, StartPrefetched, StatusRequest, StatusUpdate,
)
from jobvisor.reasons import exit_reason
from jobvisor.resources import Resources, parse_walltime
from jobvisor.states import JobState
from jobvisor.wire_values import check_wire_value

from job_cmd.codes.base import Code
from job_cmd.codes.registry import get_code
from job_cmd.fsutil import META_DIR

from agent import ops, tail
from agent.backend import JobBackend
from agent.inputs import InputError, place_inputs, write_chunk
from agent.jobs import Ending, Ended, JobRecord, Prefetched, Running

logger = logging.getLogger(__name__)


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


class AgentCore:
    """Implements `agent.backend.CoreEvents` for its backend."""

    def __init__(
        self,
        agent_id: str,
        config: AgentConfig,
        comm: Comm,
        backend: JobBackend,
        *,
        io_timeout: float = 30.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        op_env: dict[str, str] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.config = config
        self.comm = comm
        self.backend = backend
        self.io_timeout = io_timeout
        self.max_message_bytes = max_message_bytes
        self.op_env = op_env  # environment of analysis subprocesses
        self.jobs: dict[str, JobRecord] = {}
        # jobs sent ahead (RunJob.prefetched), started FIFO as started jobs end; see RunJob's docstring
        self.prefetched: OrderedDict[str, JobRecord] = OrderedDict()
        self._input_errors: dict[tuple[str, int], str] = {}  # an InputChunk that could not be written
        self._poll_start = 0  # rotates, so a congested link does not starve the later jobs
        self.log_backlog = False  # output was left in its file because the link was congested
        self._handlers: dict[type, Callable[[Any], None]] = {
            RunJob: self.on_run, InputChunk: self.on_input_chunk, StartPrefetched: self.on_start_prefetched, CancelJob: self.on_cancel,
            StatusRequest: self.on_status, IoRequest: self.on_io, AnalysisRequest: self.on_analysis,
            KillAgent: self.on_kill, ForgetJobs: self.on_forget, HelloAck: self.on_hello_ack, ErrorMessage: self.on_error,
        }
        backend.bind(self)

    # ------------------------------------------------------------------ queries

    def has_running(self) -> bool:
        return any(not job.is_terminal for job in self.jobs.values())

    def all_reported(self) -> bool:
        """Every ended job's end is reported and its log all queued (it may follow the end)."""
        return all(job.report_sent and not job.log_pending for job in self.jobs.values() if job.is_terminal)

    def report(self, job: JobRecord) -> JobReport:
        return job.report(self.backend.info(job))

    def hello_reports(self) -> list[JobReport]:
        """Every running job and every terminal one not yet forgotten (or whose log is not all
        sent), for a Hello. An ended job is announced as ended, with its final log size: the
        supervisor answers with the offset its log goes on from (HelloAck), or forgets it."""
        reports = []
        for job in self.jobs.values():
            phase = job.phase
            if job.unwanted:
                continue
            if isinstance(phase, Ended):
                phase.report_sent = True
            reports.append(self.report(job))
        return reports

    def adopt(self, jobs: list[JobRecord]) -> None:
        """Jobs an earlier agent left (its backend found them), before the first Hello."""
        for job in jobs:
            self.jobs[job.job_id] = job

    # ------------------------------------------------------------------ messages

    def handle(self, message: Message) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            logger.warning("agent %s: no handler for message %s", self.agent_id, message.TYPE)
            self.comm.send(ErrorMessage(f"the agent does not handle {message.TYPE!r} messages", ref_type=message.TYPE))
            return
        handler(message)

    def on_run(self, msg: RunJob) -> None:
        existing = self.jobs.get(msg.job_id)
        if existing is not None:
            if existing.attempt == msg.attempt:  # a resent run: say again what we know
                logger.info("job %s attempt %d: run received again, ignored", msg.job_id, msg.attempt)
                self.comm.send(Ack(msg.job_id, msg.attempt))
                if not existing.is_terminal or existing.report_sent:
                    self.comm.send(StatusUpdate(self.report(existing)))
                return
            if not existing.is_terminal and not self.backend.replace_live(existing):
                where = self.backend.still_there.format(agent=self.agent_id)
                reason = f"attempt {existing.attempt} of this job is {where}"
                logger.warning("job %s attempt %d refused: %s", msg.job_id, msg.attempt, reason)
                self.comm.send(StatusUpdate(JobReport(msg.job_id, msg.attempt, JobState.FAILED, reason, at=time.time())))
                return
            self._drop(existing)
        job = self.backend.new_record(msg)
        self.jobs[job.job_id] = job
        if self.backend.acks_runs:
            self.comm.send(Ack(job.job_id, job.attempt))
        if msg.prefetched and self.backend.holds_slots:
            job.phase = Prefetched(msg, self.backend.prepare_ahead(job.run_dir))
            self.prefetched[job.job_id] = job
            return
        self._start(job, msg)

    def on_input_chunk(self, msg: InputChunk) -> None:
        """Part of an input too big for its run message, which follows: written now; a failure
        is remembered and fails the run when it comes (a file half there must not be used)."""
        try:
            write_chunk(os.path.abspath(msg.run_dir), msg.path, msg.offset, msg.data)
        except InputError as exc:
            logger.warning("job %s attempt %d: %s", msg.job_id, msg.attempt, exc)
            self._input_errors[(msg.job_id, msg.attempt)] = str(exc)

    def on_start_prefetched(self, msg: StartPrefetched) -> None:
        job = self.prefetched.pop(msg.job_id, None)
        if job is not None:
            self._start_prefetched(job)

    def slot_freed(self) -> None:
        """A started job ended: its slot passes to the oldest prefetched job."""
        if self.prefetched:
            self._start_prefetched(self.prefetched.popitem(last=False)[1])

    def _start_prefetched(self, job: JobRecord) -> None:
        phase = job.phase
        if isinstance(phase, Prefetched) and self.jobs.get(job.job_id) is job:
            self._start(job, phase.msg, phase.ahead)

    def _start(self, job: JobRecord, msg: RunJob, ahead: Any = None) -> None:
        try:
            resources = _resources(msg.resources)
            walltime = msg.resources.get("walltime") if isinstance(msg.resources, dict) else None
            job.walltime = None if walltime is None else parse_walltime(walltime)
            job.code_obj = code = get_code(msg.code)
            self.backend.prepare_run_dir(job, ahead)
            if msg.inputs or self._input_errors:
                self._place_inputs(job, msg)
            launch = code.launch(msg.params, job.run_dir, resources)
        except Exception as exc:  # a plugin's bug must fail the job, not the agent
            return self.prepare_failed(job, exc)
        # The job's own variables win over the code's (a shell job's params.env), and jobvisor's
        # JOBVISOR_* over both: a job cannot lose its id or progress file by accident.
        env = {**launch.env, **msg.env} if msg.env else dict(launch.env)
        env.update(env_names.job_env(job.job_id, job.attempt, job.run_path, job.progress_path, msg.array_index))
        self.backend.launch(job, launch, env, resources)

    def _place_inputs(self, job: JobRecord, msg: RunJob) -> None:
        """Its input files into the run dir (InputError fails the job with a reason naming the file)."""
        failed = self._input_errors.pop((job.job_id, job.attempt), None)
        if failed is not None:
            raise InputError(failed)
        place_inputs(job.run_path, msg.inputs)

    def prepare_failed(self, job: JobRecord, exc: Exception) -> None:
        """Fail a job whose launch could not be prepared, with a reason the user can act on
        (called from an except block: an unexpected error is logged with its traceback)."""
        if isinstance(exc, (JobvisorError, InputError)):
            reason = str(exc)
        elif isinstance(exc, OSError):
            reason = f"cannot prepare run dir {job.run_path}: {exc.strerror or exc}"
        else:
            logger.exception("job %s: code %s failed to prepare its launch", job.job_id, job.code)
            reason = f"code {job.code!r} failed to prepare the run: {type(exc).__name__}: {exc}"
        self.fail_to_start(job, reason)

    def running(self, job: JobRecord, reason: str = "", now: float | None = None) -> None:
        job.set_state(JobState.RUNNING, reason, now=now)
        self.comm.send(StatusUpdate(self.report(job)))

    def update(self, job: JobRecord) -> None:
        if self.comm.linked():
            self.comm.send(StatusUpdate(self.report(job)))

    def on_cancel(self, msg: CancelJob) -> None:
        job = self.jobs.get(msg.job_id)
        if job is None or job.is_terminal or job.stopping:
            return  # unknown, finished or already being stopped: nothing to do
        if isinstance(job.phase, Prefetched):  # never started: it holds no slot, so no prefetched job starts in its place
            self.prefetched.pop(job.job_id, None)
            job.end(JobState.CANCELED, msg.reason, 0, time.time())
            self._finish(job)
            return
        logger.info("job %s attempt %d: canceling (%s)", job.job_id, job.attempt, msg.reason)
        self.terminate(job, (JobState.CANCELED, msg.reason))

    def on_status(self, msg: StatusRequest) -> None:
        jobs = [to_wire(self.report(job)) for job in self.jobs.values() if not job.unwanted]
        self.comm.send(OpReply(msg.op_id, True, data={"jobs": jobs}))

    # Ops run in threads and subprocesses: their run dir is made absolute here, on the loop,
    # because the runner changes the agent's working directory for an instant at each spawn.
    def on_io(self, msg: IoRequest) -> None:
        msg = dataclasses.replace(msg, run_dir=os.path.abspath(msg.run_dir))
        self.comm.run_op(msg.op_id, lambda: ops.io_reply(msg, self.io_timeout))

    def on_analysis(self, msg: AnalysisRequest) -> None:
        msg = dataclasses.replace(msg, run_dir=os.path.abspath(msg.run_dir))
        limit = analysis_result_limit(self.max_message_bytes)
        self.comm.run_op(msg.op_id, lambda: ops.analysis_reply(msg, env=self.op_env, max_bytes=limit))

    def on_kill(self, msg: KillAgent) -> None:
        logger.info("agent %s: kill requested (%s), cancel jobs: %s", self.agent_id, msg.reason, msg.cancel_jobs)
        self.comm.stop(msg.reason or "agent killed", msg.cancel_jobs)

    def on_forget(self, msg: ForgetJobs) -> None:
        for job_id in msg.job_ids:
            job = self.jobs.get(job_id)
            if job is None or not job.is_terminal:  # a running job here is a newer attempt: keep it
                continue
            if job.log_pending:  # its end is committed, its log still on the way: dropped once sent
                job.phase.forgotten = True
            else:
                self._drop(job)

    def on_hello_ack(self, msg: HelloAck) -> None:
        offsets = msg.log_offsets if isinstance(msg.log_offsets, dict) else {}
        for job_id in msg.forget:
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if job.is_terminal:
                self._drop(job)
            elif isinstance(job.phase, Prefetched):  # never started: nothing to stop
                self.prefetched.pop(job.job_id, None)
                self._drop(job)
            else:
                logger.warning("job %s attempt %d: the supervisor does not want it, canceling", job.job_id, job.attempt)
                live = job.live
                live.forget = True
                if live.ending is None:
                    self.terminate(job, (JobState.CANCELED, "the supervisor forgot this job"))
        for job in self.jobs.values():
            offset = offsets.get(job.job_id, 0)
            offset = offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else 0
            final_size = job.final_size
            if final_size is not None:
                offset = min(offset, final_size)
            job.sent_offset = offset
        self.poll()

    def on_error(self, msg: ErrorMessage) -> None:
        logger.warning("agent %s: the supervisor reports an error about our %r: %s", self.agent_id, msg.ref_type, msg.detail)

    # ------------------------------------------------------------------ stopping

    def cancel_all(self, reason: str) -> None:
        for job in list(self.prefetched.values()):  # prefetched ones first, so none starts as others end
            self.on_cancel(CancelJob(job.job_id, reason))
        for job in list(self.jobs.values()):
            if job.live is not None and not job.stopping:
                self.terminate(job, (JobState.CANCELED, reason))

    def terminate(self, job: JobRecord, ending: Ending) -> None:
        """Decide a live job's end (a cancel, the walltime) and have its backend stop it; the
        end it reports then is `ending`."""
        job.live.ending = ending
        self.backend.stop(job, ending)

    def kill_all(self) -> None:
        """At the agent's exit: stop every live job at once (last resort)."""
        self.backend.kill_all([job for job in self.jobs.values() if job.live is not None])

    # ------------------------------------------------------------------ endings

    def conclude(self, job: JobRecord, state: JobState, reason: str, returncode: int | None, quiet: bool = False,
                 names: set[str] | None = None) -> None:
        """Record an attempt's end (exit code, result when completed, end time, final log size),
        write its status file, then report it (or drop it if the supervisor forgot it).
        `names`: the run dir's entries when known, so that a code reading its result the
        default way is not asked for one where no META_DIR exists."""
        forget = job.unwanted
        job.exit_code = returncode
        code = job.code_obj
        if state is JobState.COMPLETED and code is not None:
            if names is None or META_DIR in names or type(code).result is not Code.result:
                try:
                    job.result = code.result(job.run_dir)
                    check_wire_value(job.result, "result")
                except (OSError, ValueError) as exc:
                    reason = f"the result file could not be read: {exc}"
                except InvalidRequest as exc:  # it would never pack: a report (or hello) carrying it could not go
                    job.result = None
                    reason = f"the result cannot be sent: {exc.field}: {exc.detail}"
        elif state is JobState.FAILED and code is not None and returncode is not None and returncode > 0:
            reason = self._told(job, code, reason, returncode, names)
            if reason == exit_reason(returncode):  # the job said nothing better: its last words
                last = tail.last_output_line(job.log_path)
                if last:
                    reason += f"; last output: {last}"
        job.end(state, reason, self.backend.log_size(job), time.time())
        log = logger.debug if quiet and state is JobState.COMPLETED else logger.info
        log("job %s attempt %d: %s%s", job.job_id, job.attempt, state, f" ({reason})" if reason else "")
        if job.status_written:  # never leave a stale one; a job that ended sooner leaves none
            self.write_status(job)
        if forget:
            self._drop(job)
        else:
            self._finish(job)

    @staticmethod
    def _told(job: JobRecord, code: Code, reason: str, returncode: int, names: set[str] | None) -> str:
        """The job's own words for its failure (a python job's exception) in place of the bare
        exit code its reason starts with; the reason as it is when the job left none."""
        bare = exit_reason(returncode)
        if not reason.startswith(bare) or (names is not None and META_DIR not in names):
            return reason
        try:
            told = code.failure(job.run_dir)
        except Exception:  # a plugin's bug must not lose the end
            logger.exception("job %s: code %s failed to say why the job failed", job.job_id, job.code)
            return reason
        return told + reason[len(bare):] if told else reason

    def fail_to_start(self, job: JobRecord, reason: str) -> None:
        logger.warning("job %s attempt %d: failed to start: %s", job.job_id, job.attempt, reason)
        job.end(JobState.FAILED, reason, 0, time.time())
        if job.run_dir.is_dir():
            self.write_status(job)
        self._finish(job)
        if self.backend.holds_slots:
            # its slot frees on the next turn, not from here: when every prefetched job fails at
            # once (a program that does not exist), starting each from the previous one's
            # failure would nest one call chain per prefetched job, and enough of them overflow
            # the stack
            self.backend.call_later(0, self.slot_freed)

    def _finish(self, job: JobRecord) -> None:
        """Report a terminal job's end (when linked), after what of its log the link takes now;
        the rest of the log follows (`poll`). The end never waits for a log backlog: it carries
        the final log size, and the supervisor takes the bytes that come after it. A job the
        supervisor has forgotten is dropped once its log is all sent."""
        phase = job.phase
        if not phase.report_sent:
            if not self.comm.linked():
                return
            if job.log_pending:
                self._ship_logs([job])  # a short job's output goes in the same frame, before its end
            phase.report_sent = True
            self.comm.send(StatusUpdate(self.report(job)))
        elif job.log_pending:
            self._ship_logs([job])
        if not job.log_pending:
            job.close_log()
            if phase.forgotten:
                self._drop(job)

    def _drop(self, job: JobRecord) -> None:
        job.cancel_timers()
        job.close_log()
        if self.jobs.get(job.job_id) is job:
            del self.jobs[job.job_id]
        self.backend.dropped(job)

    def write_status(self, job: JobRecord) -> None:
        try:
            self.backend.write_status(job)
        except OSError as exc:
            logger.warning("job %s: cannot write its status file: %s", job.job_id, exc)
        else:
            job.status_written = True

    # ------------------------------------------------------------------ output and progress

    def poll(self) -> None:
        """Ship new output (at most max_log_chunk per job) and progress; write the status file
        of a job that has run for a moment (Running.status_due); finish drained jobs."""
        # prefetched jobs have not started: no output or progress yet
        jobs = [job for job in self.jobs.values()
                if not isinstance(job.phase, Prefetched) and (job.log_pending or not job.report_sent)]
        self.log_backlog = False
        if not jobs:
            return
        start = self._poll_start % len(jobs)
        self._poll_start += 1
        now = time.time()
        for job in jobs[start:] + jobs[:start]:
            phase = job.phase
            if isinstance(phase, Ended):
                self._finish(job)
                continue
            if isinstance(phase, Running) and phase.status_due is not None and now >= phase.status_due:
                phase.status_due = None
                self.write_status(job)
            self.poll_progress(job)
        self._ship_logs([job for job in jobs if job.log_pending and not isinstance(job.phase, Ended)])

    def ship_backlog(self) -> None:
        """The link has room again: ship the output left behind (and finish the ended jobs
        that waited for it), without `poll`'s look at each job's progress and status files:
        this runs after every frame the link writes while a job prints faster than it."""
        self.log_backlog = False
        running = []
        for job in list(self.jobs.values()):
            if not job.log_pending or isinstance(job.phase, Prefetched):
                continue
            if isinstance(job.phase, Ended):
                self._finish(job)
            else:
                running.append(job)
        self._ship_logs(running)

    def _ship_logs(self, jobs: list[JobRecord]) -> None:
        """Queue new output of `jobs`, a chunk of each in turn, until nothing is new or the link
        is congested; `log_backlog` then says output was left behind, and the link calls
        `ship_backlog` as soon as it has sent what it holds, instead of waiting for the next poll."""
        while jobs:
            if not self.comm.log_ready():
                self.log_backlog = True
                return
            jobs = [job for job in jobs if self._ship_log(job)]

    def _ship_log(self, job: JobRecord) -> bool:
        """Queue one chunk of the job's new output; True when it was a full one (more may wait)."""
        phase = job.phase
        ended = phase if isinstance(phase, Ended) else None
        chunk = self.config.max_log_chunk
        try:
            data = tail.read_new(job, chunk, ended.final_size if ended else None)
        except OSError as exc:
            logger.warning("job %s: cannot read its output log: %s", job.job_id, exc)
            if ended is not None:
                self._log_stops(job, ended)
            return False
        if not data and ended is not None and job.sent_offset < ended.final_size:
            logger.warning("job %s: its output log lost bytes after its end (%d of %d left)",
                           job.job_id, job.sent_offset, ended.final_size)
            self._log_stops(job, ended)
            return False
        if data:
            self.comm.send(LogChunk(job.job_id, job.attempt, job.sent_offset, data))
            job.sent_offset += len(data)
        return len(data) == chunk

    def _log_stops(self, job: JobRecord, ended: Ended) -> None:
        """Nothing more of an ended job's log can be sent: its final size is what was sent,
        and the supervisor, told by its end that more would come, hears it again."""
        ended.final_size = job.sent_offset
        if ended.report_sent and self.comm.linked():
            self.comm.send(StatusUpdate(self.report(job)))

    def poll_progress(self, job: JobRecord) -> None:
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
