"""One job as the agent sees it, and the pure rules that turn a process's end into a state."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobvisor.protocol.agent_wire import JobReport, RunJob
from jobvisor.reasons import exit_reason
from jobvisor.states import JobState

from job_cmd.fsutil import OUTPUT_LOG, PROGRESS_FILE
from job_cmd.status_file import JobStatus


def exit_outcome(returncode: int, ending: tuple[JobState, str] | None) -> tuple[JobState, str]:
    """The terminal state and reason of a job whose process ended with `returncode` (Popen's
    convention: negative is the signal that killed it). `ending` is what the agent decided
    before the end (a cancel or the walltime), which wins over how the process died."""
    if ending is not None:
        return ending
    if returncode == 0:
        return JobState.COMPLETED, ""
    return JobState.FAILED, exit_reason(returncode)


Ending = tuple[JobState, str]  # decided before the process ended: (CANCELED, reason), (TIMED_OUT, reason)...


# ---------------------------------------------------------------------- phases
# A job is in exactly one phase; what only means something in one phase lives in it, so no
# combination of flags can say two things at once. The core moves a job through them:
#
#   Prefetched --start--> Spawning --spawned--> Running --exit--> Ended
#        \________________ (cancel) ____________________________/^
#   (a backend that queues runs itself, Slurm: new --start--> Delegated --its end--> Ended)


@dataclass(eq=False, slots=True)
class Prefetched:
    """Sent ahead (RunJob.prefetched): holds no slot, waits for one to free (FIFO)."""

    msg: RunJob
    ahead: Any  # its run dir being made in advance (JobBackend.prepare_ahead)


@dataclass(eq=False, slots=True)
class Live:
    """Started: its backend has it (a slot is held, for a backend with slots)."""

    ending: Ending | None = None  # decided before the end (a cancel, the walltime): wins over how it ended
    forget: bool = False  # the supervisor does not want it: dropped at its end, with no report
    timers: list = field(default_factory=list)  # handles with .cancel() (walltime, SIGKILL)

    def cancel_timers(self) -> None:
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()


@dataclass(eq=False, slots=True)
class Spawning(Live):
    """Its fork/exec runs (in a worker thread, or later on the loop)."""


@dataclass(eq=False, slots=True)
class Running(Live):
    """Its process runs and the agent owns it."""

    process: Any = None  # the spawned child (agent.spawn.Child), reaped by the runner
    status_due: float | None = None  # when `poll` writes its first status file


@dataclass(eq=False, slots=True)
class Delegated(Live):
    """Handed to a backend that queues and runs it itself (Slurm), which says when it ends."""


@dataclass(eq=False, slots=True)
class Ended:
    """Terminal. The report goes at once (or with a Hello), the rest of the log after it."""

    final_size: int  # output.log's size at the end: what remains to be shipped
    report_sent: bool = False  # the terminal report was queued (or carried by a Hello)
    forgotten: bool = False  # the supervisor committed the end: dropped once the log is all sent


Phase = Prefetched | Spawning | Running | Delegated | Ended


@dataclass(eq=False)
class JobRecord:
    """One job attempt on this agent. Only `AgentCore` and its backend change it."""

    job_id: str
    attempt: int
    code: str
    run_dir: Path
    phase: Phase | None = None  # None only while a record is being made (new_record, recover)
    state: JobState = JobState.STARTING
    reason: str = ""
    exit_code: int | None = None
    result: Any = None
    changed_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    walltime: float | None = None
    pid: int | None = None  # of its process once spawned (kept after the end: its status says it)
    usage: dict | None = None  # peak memory and CPU time of its ended process (Child.usage)
    code_obj: Any = None  # the job_cmd Code, for the result at the end
    # output log
    log_fd: int | None = None  # read-only fd of output.log while bytes may remain to be sent
    sent_offset: int = 0  # bytes of output.log queued to (or acknowledged by) the supervisor
    progress_stamp: tuple = ()
    status_written: bool = False  # its status file exists (a job that ends soon leaves none)
    workdir: str = ""  # runs there instead of its run dir (RunJob.workdir); its log stays in the run dir

    # The run dir's paths as strings, computed once: os calls take them as they are, while
    # pathlib's joins and conversions were a tenth of the agent's work per short job.
    run_path: str = field(init=False)
    log_path: str = field(init=False)
    progress_path: str = field(init=False)

    def __post_init__(self) -> None:
        self.run_path = path = os.fspath(self.run_dir)
        self.log_path = os.path.join(path, OUTPUT_LOG)
        self.progress_path = os.path.join(path, PROGRESS_FILE)

    @property
    def cwd(self) -> str:
        """Where its process starts: its run dir, or the directory it runs in place."""
        return self.workdir or self.run_path

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def live(self) -> Live | None:
        """Its phase while started and not ended, else None."""
        phase = self.phase
        return phase if isinstance(phase, Live) else None

    @property
    def stopping(self) -> bool:
        """Started and its end already decided (a cancel, the walltime)."""
        phase = self.phase
        return isinstance(phase, Live) and phase.ending is not None

    @property
    def unwanted(self) -> bool:
        """The supervisor forgot it while it ran: it goes without a report."""
        phase = self.phase
        return isinstance(phase, Live) and phase.forget

    @property
    def final_size(self) -> int | None:
        phase = self.phase
        return phase.final_size if isinstance(phase, Ended) else None

    @property
    def report_sent(self) -> bool:
        phase = self.phase
        return isinstance(phase, Ended) and phase.report_sent

    @property
    def log_pending(self) -> bool:
        """Bytes of the log may still have to be sent."""
        phase = self.phase
        return not isinstance(phase, Ended) or self.sent_offset < phase.final_size

    def set_state(self, state: JobState, reason: str = "", now: float | None = None) -> None:
        self.state = state
        self.reason = reason
        self.changed_at = time.time() if now is None else now

    def end(self, state: JobState, reason: str, final_size: int, now: float) -> None:
        """Move to Ended (its timers cancelled) in the terminal `state`."""
        phase = self.phase
        if isinstance(phase, Live):
            phase.cancel_timers()
        self.phase = Ended(final_size)
        self.finished_at = now
        self.set_state(state, reason, now=now)

    def report(self, info: dict) -> JobReport:
        """Its report to the supervisor; `info` is its backend's (pid, Slurm ids)."""
        phase = self.phase
        return JobReport(
            job_id=self.job_id,
            attempt=self.attempt,
            state=self.state,
            reason=self.reason,
            exit_code=self.exit_code,
            result=self.result,
            at=self.changed_at,
            log_size=phase.final_size if isinstance(phase, Ended) else self.sent_offset,
            info=info,
            started_at=self.started_at,
            prefetched=isinstance(phase, Prefetched),
        )

    def status(self) -> JobStatus:
        return JobStatus(
            job_id=self.job_id,
            attempt=self.attempt,
            state=str(self.state),
            reason=self.reason,
            pid=self.pid,
            exit_code=self.exit_code,
            started_at=self.started_at,
            finished_at=self.finished_at,
            log_size=self.final_size or 0,
        )

    def close_log(self) -> None:
        if self.log_fd is not None:
            try:
                os.close(self.log_fd)
            except OSError:
                pass
            self.log_fd = None

    def cancel_timers(self) -> None:
        phase = self.phase
        if isinstance(phase, Live):
            phase.cancel_timers()
