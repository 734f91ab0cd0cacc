"""One job as the agent sees it, and the pure rules that turn a process's end into a state."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobvisor.protocol import JobReport
from jobvisor.resources import format_walltime
from jobvisor.states import JobState

from job_cmd.fsutil import OUTPUT_LOG, PROGRESS_FILE
from job_cmd.status_file import JobStatus


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_outcome(returncode: int, ending: tuple[JobState, str] | None) -> tuple[JobState, str]:
    """The terminal state and reason of a job whose process ended with `returncode` (Popen's
    convention: negative is the signal that killed it). `ending` is what the agent decided
    before the end (a cancel or the walltime), which wins over how the process died."""
    if ending is not None:
        return ending
    if returncode == 0:
        return JobState.COMPLETED, ""
    if returncode < 0:
        return JobState.FAILED, f"killed by signal {signal_name(-returncode)}"
    return JobState.FAILED, f"exit code {returncode}"


def walltime_reason(walltime: float) -> str:
    return f"walltime of {format_walltime(walltime)} exceeded"


@dataclass(eq=False)
class JobRecord:
    """Mutable state of one job attempt on this agent. Only `AgentCore` changes it."""

    job_id: str
    attempt: int
    code: str
    run_dir: Path
    state: JobState = JobState.STARTING
    reason: str = ""
    exit_code: int | None = None
    result: Any = None
    changed_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    walltime: float | None = None
    pid: int | None = None
    process: Any = None  # the subprocess.Popen, while the agent owns the process
    code_obj: Any = None  # the job_cmd Code, for the result at the end
    # decided before the process ended: (CANCELED, reason) or (TIMED_OUT, reason)
    ending: tuple[JobState, str] | None = None
    timers: list = field(default_factory=list)  # handles with .cancel() (walltime, SIGKILL)
    # output log
    log_fd: int | None = None  # read-only fd of output.log while bytes may remain to be sent
    sent_offset: int = 0  # bytes of output.log queued to (or acknowledged by) the supervisor
    final_size: int | None = None  # size of output.log when the job ended
    report_sent: bool = False  # the terminal report was queued (or carried by a Hello)
    forget_when_done: bool = False  # the supervisor does not want this job: drop it, no report
    # progress file
    progress_stamp: tuple = ()
    spawning: bool = False  # its fork/exec runs in a worker thread
    prefetched: bool = False  # sent ahead (RunJob.prefetched): waits for a started job to end
    slotted: bool = False  # was started: its end frees a slot for the next prefetched job
    status_written: bool = False  # its status file exists (it ran for STATUS_FILE_DELAY)
    status_due: float | None = None  # when `poll` writes its first status file (a local process)
    ahead: Any = None  # prefetched: its run dir being made in advance (Processes.prepare_ahead)

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
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def log_pending(self) -> bool:
        """Bytes of the log may still have to be sent."""
        return not self.is_terminal or self.final_size is None or self.sent_offset < self.final_size

    def set_state(self, state: JobState, reason: str = "", now: float | None = None) -> None:
        self.state = state
        self.reason = reason
        self.changed_at = time.time() if now is None else now

    def report(self) -> JobReport:
        size = self.final_size if self.is_terminal and self.final_size is not None else self.sent_offset
        return JobReport(
            job_id=self.job_id,
            attempt=self.attempt,
            state=str(self.state),
            reason=self.reason,
            exit_code=self.exit_code,
            result=self.result,
            at=self.changed_at,
            log_size=size,
            info={"pid": self.pid} if self.pid is not None else {},
            started_at=self.started_at,
            prefetched=self.prefetched,
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
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()
