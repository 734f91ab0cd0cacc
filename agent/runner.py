"""Processes of jobs: spawned directly (one posix_spawn of the job's own program, no shell or
python in between; see `agent.spawn`), their output appended to run_dir/output.log, reaped
through pidfds in one epoll set that the event loop watches (no thread per job, no asyncio
child watcher), stopped by signalling their process group."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from job_cmd.codes.base import Launch
from job_cmd.fsutil import OUTPUT_LOG
from job_cmd.status_file import read_status, write_status

from agent import libc_spawn, tail
from agent.jobs import JobRecord, Running
from agent.spawn import RESET_SIGNALS, Child, ProgramCache, Spawner, close_inherited_fds, open_pidfd
from agent.spawn_pool import SpawnPool

logger = logging.getLogger(__name__)

ExitCallback = Callable[[JobRecord, int], None]


class Runner:
    """The `Processes` of `agent.local.LocalBackend`, for real."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, base_env: dict[str, str], on_exit: ExitCallback, *, spawn_threads: int = 0
    ) -> None:
        self.loop = loop
        # The C library's posix_spawn (the child sets up its own directory and log): on the loop
        # (spawn_threads = 0, the least CPU per job: no thread hand-offs of the GIL) or in
        # worker threads. os.posix_spawn on the loop where the C library cannot chdir.
        self._libc = libc_spawn.load(RESET_SIGNALS)
        if self._libc is None:
            logger.info("the C library has no posix_spawn chdir action: jobs are spawned with os.posix_spawn")
        self._pool = SpawnPool(loop, self._libc, spawn_threads) if self._libc is not None and spawn_threads > 0 else None
        self._posix = Spawner() if self._libc is None else None
        self._programs = ProgramCache()
        close_inherited_fds()
        self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self._ahead: list[Ahead] = []
        self.base_env = base_env  # the agent's environment, its token already removed
        self._base_envp = {key: _env_entry(key, value) for key, value in base_env.items()}
        self._env_block = libc_spawn.EnvBlock(list(self._base_envp.values())) if self._libc is not None else None
        self.on_exit = on_exit
        self._ends = EndWatch(loop, self._reap)

    def close(self) -> None:
        """Let the worker threads end (jobs already started are not touched)."""
        if self._pool is not None:
            self._pool.close()
        self._preparer.shutdown(wait=False, cancel_futures=True)
        self._ends.close()

    def prepare_ahead(self, run_dir: Path) -> "Ahead":
        """A job sent ahead starts when another ends: make its run dir before that, in a worker
        thread, so that the start does not wait on the file system (creating a directory can
        cost as much as the spawn itself). The runs of one frame go to the thread together, and
        the thread only flags each dir as made: no future, lock or wake-up per job. The path
        is made absolute here, on the loop (a spawn without the C library's chdir action
        changes the working directory for an instant)."""
        ahead = Ahead(os.path.abspath(run_dir))
        if not self._ahead:
            self.loop.call_soon(self._send_ahead)
        self._ahead.append(ahead)
        return ahead

    def _send_ahead(self) -> None:
        batch, self._ahead = self._ahead, []
        try:
            self._preparer.submit(_make_ahead, batch)
        except RuntimeError:  # shut down: each start makes its own dir
            pass

    def prepare_run_dir(self, run_dir: Path, ahead: "Ahead | None" = None) -> None:
        if ahead is not None and ahead.made:
            return
        make_run_dir(run_dir)  # not made yet (or it failed there): here, and an error is this start's

    def spawn(self, job: JobRecord, launch: Launch, env: dict[str, str], done: Callable[[Child | OSError], None]) -> None:
        if job.attempt > 1:
            _keep_previous_log(job)
        job.sent_offset = 0
        job_path = env.get("PATH", self.base_env.get("PATH", os.defpath))
        cwd = job.cwd
        program = self._programs.resolve(launch.argv[0], job_path, cwd)
        if self._libc is not None:
            # the child opens output.log (made ahead for a held job, else created by the child);
            # the agent opens it for reading when it has bytes
            extra = [_env_entry(key, value) for key, value in env.items()]
            if self._base_envp.keys().isdisjoint(env):
                envp = self._env_block.with_extra(extra)
            else:  # the job sets some of the agent's own variables: its values win
                envp = list({**self._base_envp, **dict(zip(env, extra))}.values())
            args = (_c_string(program), [_c_string(arg) for arg in launch.argv], envp,
                    _c_string(cwd), _c_string(job.log_path))
            if self._pool is not None:
                self._pool.spawn(*args, lambda pid, pidfd, error: self._started(job, pid, pidfd, error, done))
                return
            try:
                pid = self._libc.spawn(*args)
            except OSError as exc:
                return self._started(job, None, None, exc, done)
            return self._started(job, pid, open_pidfd(pid), None, done)
        # one descriptor: the job's stdout and stderr (O_APPEND), and the agent's pread/fstat of
        # the same file (file system calls are most of an agent's cost per short job)
        log_fd = os.open(job.log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        job.log_fd = log_fd
        try:
            child = self._posix.spawn(launch.argv, cwd, {**self.base_env, **env}, log_fd, program)
        except OSError as exc:
            return self._started(job, None, None, exc, done)
        self._started(job, child.pid, open_pidfd(child.pid), None, done)

    def _started(self, job: JobRecord, pid: int | None, pidfd: int | None, error: OSError | None,
                 done: Callable[[Child | OSError], None]) -> None:
        if error is not None or pid is None:
            job.close_log()
            done(error or OSError("the job did not start"))
            return
        child = Child(pid)
        if pidfd is None:  # cannot happen for our unreaped child; be safe: reap by polling
            logger.warning("job %s: no pidfd for pid %d, polling for its end instead", job.job_id, pid)
            self.loop.call_later(0.1, self._poll_exit, job, child)
        else:
            self._ends.watch(pidfd, job, child)
        done(child)

    def _poll_exit(self, job: JobRecord, child: Child) -> None:
        if child.poll() is None:
            self.loop.call_later(0.1, self._poll_exit, job, child)
        else:
            self._reap(job, child)

    def _reap(self, job: JobRecord, child: Child) -> None:
        # The leader is a zombie until reaped, so its pid still names our group: kill whatever
        # the job left behind (background children) so nothing outlives it or writes to its log.
        _killpg(child.pid, signal.SIGKILL)
        returncode = child.poll()
        if returncode is None:  # the pidfd said it exited, so this cannot block
            returncode = child.wait()
        job.usage = child.usage or None
        self.on_exit(job, returncode)

    def signal_group(self, job: JobRecord, sig: int) -> None:
        """Only while its process runs and is not reaped: after that its pid may name another."""
        if isinstance(job.phase, Running) and job.pid is not None:
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


class EndWatch:
    """The ends of jobs' processes: their pidfds in one epoll set of our own, whose descriptor
    the event loop watches. A job costs two epoll_ctl calls and a close; through the loop's
    add_reader/remove_reader it also cost a handle, a selector key and dict updates each way
    (7 us against 2 us here). Several ends are taken per wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_end: Callable[[JobRecord, Child], None]) -> None:
        self.loop = loop
        self.on_end = on_end
        self._epoll = select.epoll()
        self._jobs: dict[int, tuple[JobRecord, Child]] = {}  # pidfd -> job and its process
        loop.add_reader(self._epoll.fileno(), self._ready)

    def watch(self, pidfd: int, job: JobRecord, child: Child) -> None:
        self._epoll.register(pidfd, select.EPOLLIN)
        self._jobs[pidfd] = (job, child)

    def _ready(self) -> None:
        for pidfd, _ in self._epoll.poll(0):
            watched = self._jobs.pop(pidfd, None)
            if watched is None:
                continue
            job, child = watched
            # Out of the set first: closing is not enough while a child just spawned still
            # holds the descriptor (close-on-exec takes effect after its parent resumes), and
            # the set would then report a number that may already name another file.
            self._epoll.unregister(pidfd)
            os.close(pidfd)
            try:
                self.on_end(job, child)
            except Exception:  # one job's bookkeeping must not lose the other ends
                logger.exception("job %s: handling the end of its process failed", job.job_id)

    def close(self) -> None:
        """Stop watching (at agent exit; the processes are not touched)."""
        if not self._epoll.closed:
            self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        for pidfd in self._jobs:
            os.close(pidfd)
        self._jobs.clear()


class Ahead:
    """A run dir being made ahead; `made` is set by the worker thread once it exists."""

    __slots__ = ("path", "made")

    def __init__(self, path: str) -> None:
        self.path = path
        self.made = False


def _make_ahead(batch: list[Ahead]) -> None:
    for ahead in batch:
        try:
            make_run_dir(ahead.path)
            # The output log too (empty; an existing one is left as it is): the child only
            # opens it then, instead of allocating its inode while the agent waits for the
            # exec (vfork), which on a file system slow to create files was most of that wait.
            os.close(os.open(os.path.join(ahead.path, OUTPUT_LOG), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError:
            continue  # tried again at the start, which reports the error
        ahead.made = True


def make_run_dir(run_dir: str | os.PathLike) -> None:
    """The run dir, private. Its .jobvisor/ is made by whatever first writes there (the status
    file, a code's params or result): most short jobs never need one, and on some file systems
    creating a directory costs as much as the spawn itself."""
    try:
        os.mkdir(run_dir, 0o700)  # the common case: its parent exists, it does not
    except OSError:
        os.makedirs(run_dir, mode=0o700, exist_ok=True)


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
    previous = read_status(job.run_dir)  # says this attempt already when it was written for it
    number = previous.attempt if previous is not None and previous.attempt < job.attempt else job.attempt - 1
    kept = os.path.join(job.run_path, f"output.{number}.log")
    while os.path.exists(kept):  # never over an earlier attempt's log
        kept = kept[: -len(".log")] + "+.log"
    try:
        os.replace(job.log_path, kept)
    except OSError as exc:
        logger.warning("job %s: cannot keep the previous output log: %s", job.job_id, exc)


_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _c_string(value: str | os.PathLike) -> bytes:
    """An argument for the C library: encoded as the OS does (os.fsencode), no NUL inside
    (codes validate their params; this guards against a plugin that does not)."""
    data = value.encode(_FS_ENCODING, _FS_ERRORS) if type(value) is str else os.fsencode(value)
    if b"\0" in data:
        raise OSError(errno.EINVAL, "an argument or path contains a NUL character")
    return data


def _env_entry(key: str, value: str) -> bytes:
    if "=" in key or not key:
        raise OSError(errno.EINVAL, f"invalid environment variable name {key!r}")
    return _c_string(f"{key}={value}")
