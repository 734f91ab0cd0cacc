"""Processes of jobs: spawned directly (one posix_spawn of the job's own program, no shell or
python in between; see `agent.spawn`), their output appended to run_dir/output.log, reaped
through a pidfd watched by the event loop (no thread per job, no asyncio child watcher),
stopped by signalling their process group."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from job_cmd.codes.base import Launch
from job_cmd.fsutil import META_DIR
from job_cmd.status_file import read_status, write_status

from agent import tail
from agent.jobs import JobRecord
from agent.spawn import Child, Spawner, close_inherited_fds

logger = logging.getLogger(__name__)

ExitCallback = Callable[[JobRecord, int], None]


class Runner:
    """The `Processes` of `agent.core.AgentCore`, for real."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, base_env: dict[str, str], on_exit: ExitCallback, *, spawn_threads: int = 0
    ) -> None:
        self.loop = loop
        # spawn_threads > 0: Popen in worker threads (a process-wide chdir cannot be shared by
        # threads); 0: posix_spawn on the loop, the cheapest start there is
        self._spawner = (
            ThreadPoolExecutor(max_workers=spawn_threads, thread_name_prefix="spawn") if spawn_threads > 0 else None
        )
        self._posix = Spawner() if self._spawner is None else None
        close_inherited_fds()
        self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self.base_env = base_env  # the agent's environment, its token already removed
        self.on_exit = on_exit

    def prepare_ahead(self, run_dir: Path) -> Future:
        """A job sent ahead starts when another ends: make its run dir now, in a worker thread,
        so that start does not wait on the file system (creating a directory can cost as much
        as the spawn itself). The path is made absolute here, on the loop, because the loop
        changes the working directory for an instant at each spawn."""
        return self._preparer.submit(make_run_dir, os.path.abspath(run_dir))

    def prepare_run_dir(self, run_dir: Path, ahead: Future | None = None) -> None:
        if ahead is not None and not ahead.cancel():
            try:
                ahead.result()  # made already, or a few system calls away (FIFO order)
                return
            except OSError:
                pass  # try again here: the error is reported as this start's
        make_run_dir(run_dir)

    def spawn(self, job: JobRecord, launch: Launch, env: dict[str, str], done: Callable[[OSError | None], None]) -> None:
        if job.attempt > 1:
            _keep_previous_log(job)
        # one descriptor: the job's stdout and stderr (O_APPEND), and the agent's pread/fstat of
        # the same file (file system calls are most of an agent's cost per short job)
        log_fd = os.open(job.log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        job.log_fd, job.sent_offset = log_fd, 0
        env = {**self.base_env, **env}

        def fork_exec() -> subprocess.Popen:
            # fork/exec releases the GIL while the child starts, so a few workers start jobs in
            # parallel and the event loop never waits for one
            return subprocess.Popen(
                launch.argv, cwd=job.run_dir, stdin=subprocess.DEVNULL, stdout=log_fd,
                stderr=subprocess.STDOUT, process_group=0, close_fds=True, env=env,
            )

        def started(process: subprocess.Popen | Child | None, error: BaseException | None) -> None:
            if error is not None or process is None:
                job.close_log()
                done(error if isinstance(error, OSError) else OSError(str(error)))
                return
            job.process, job.pid = process, process.pid
            try:
                pidfd = os.pidfd_open(process.pid)
            except OSError:  # cannot happen for our unreaped child; be safe: reap by polling
                logger.exception("job %s: pidfd_open(%d) failed, polling instead", job.job_id, process.pid)
                self.loop.call_later(0.1, self._poll_exit, job)
            else:
                self.loop.add_reader(pidfd, self._on_pidfd, job, pidfd)
            done(None)

        if self._posix is not None:
            try:
                child = self._posix.spawn(launch.argv, job.run_dir, env, log_fd)
            except OSError as exc:
                started(None, exc)
            else:
                started(child, None)
        else:
            self.loop.run_in_executor(self._spawner, fork_exec).add_done_callback(
                lambda future: started(None if future.exception() else future.result(), future.exception()))

    def _on_pidfd(self, job: JobRecord, pidfd: int) -> None:
        self.loop.remove_reader(pidfd)
        os.close(pidfd)
        self._reap(job)

    def _poll_exit(self, job: JobRecord) -> None:
        if job.process.poll() is None:
            self.loop.call_later(0.1, self._poll_exit, job)
        else:
            self._reap(job)

    def _reap(self, job: JobRecord) -> None:
        # The leader is a zombie until reaped, so its pid still names our group: kill whatever
        # the job left behind (background children) so nothing outlives it or writes to its log.
        _killpg(job.pid, signal.SIGKILL)
        returncode = job.process.poll()
        if returncode is None:  # the pidfd said it exited, so this cannot block
            returncode = job.process.wait()
        self.on_exit(job, returncode)

    def signal_group(self, job: JobRecord, sig: int) -> None:
        if job.process is not None and job.pid is not None:
            _killpg(job.pid, sig)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback)

    def write_status(self, job: JobRecord) -> None:
        write_status(job.run_dir, job.status())

    def log_size(self, job: JobRecord) -> int:
        return tail.log_size(job)

    def kill_all(self, jobs: list[JobRecord]) -> None:
        """SIGKILL every job still running (last resort at agent exit)."""
        for job in jobs:
            self.signal_group(job, signal.SIGKILL)


def make_run_dir(run_dir: str | os.PathLike) -> None:
    """The run dir and its .jobvisor/ (status, progress and result files), both private."""
    try:
        os.mkdir(run_dir, 0o700)  # the common case: its parent exists, it does not
    except OSError:
        os.makedirs(run_dir, mode=0o700, exist_ok=True)
    try:
        os.mkdir(os.path.join(run_dir, META_DIR), 0o700)
    except FileExistsError:
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _keep_previous_log(job: JobRecord) -> None:
    """A rerun in the same run dir: keep the previous attempt's output as output.N.log."""
    try:
        if os.stat(job.log_path).st_size == 0:
            return
    except FileNotFoundError:
        return
    previous = read_status(job.run_dir)
    number = previous.attempt if previous is not None and previous.attempt != job.attempt else "previous"
    try:
        os.replace(job.log_path, job.run_dir / f"output.{number}.log")
    except OSError as exc:
        logger.warning("job %s: cannot keep the previous output log: %s", job.job_id, exc)
