"""Starting a job's program: one posix_spawn (a vfork and an exec) of the program itself.

Why not `subprocess.Popen`: for each job it costs the agent about three times the CPU of
`os.posix_spawn` (an error pipe and its read, descriptor juggling, encoding the environment
in Python, closing descriptors in the child), and with thousands of short jobs a second that
overhead was a large share of the agent's own work.

Two things Popen did are done differently here:

* The working directory. Python 3.11's `os.posix_spawn` has no chdir action. Where the C
  library has one, jobs are spawned through it (`agent.libc_spawn`), on the event loop or, with
  `spawn_threads`, in worker threads (`agent.spawn_pool`). Elsewhere `Spawner` changes the
  agent's directory to the run dir for the spawn and back at once, on the event loop thread
  only; so the agent hands absolute paths to every other thread.
* Closing descriptors. Python opens every descriptor close-on-exec (PEP 446); the few that the
  agent may have inherited from whoever started it are made close-on-exec once, by
  `close_inherited_fds`, so no job sees the agent's sockets or files.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence

# Python ignores these; ignored signals stay ignored across exec, so reset them (as Popen's
# restore_signals does): a job writing to a closed pipe must die of SIGPIPE like anywhere else.
RESET_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name))


class Child:
    """A spawned process: its pid and, once reaped, its return code (Popen's convention:
    negative is the signal that killed it)."""

    __slots__ = ("pid", "returncode", "usage")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.usage: dict[str, float] = {}  # what the kernel counted for it, once reaped

    def poll(self) -> int | None:
        """The return code if the process has ended (reaping it), else None; never blocks."""
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self) -> int:
        """The return code, waiting for the end (only called once the pidfd said it ended)."""
        while self.returncode is None:
            self._reap(0)
        return self.returncode

    def _reap(self, options: int) -> None:
        """wait4, which reaps as waitpid does and also says what the process (and the children
        it waited for) used: the peak resident memory and the CPU time, as `sacct` shows them."""
        try:
            pid, status, usage = os.wait4(self.pid, options)
        except ChildProcessError:  # reaped elsewhere: nothing more to learn
            self.returncode = 0
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)
            self.usage = {"max_rss": usage.ru_maxrss * 1024,  # Linux counts kilobytes
                          "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)}


def resolve_program(program: str, job_path: str, cwd: str | os.PathLike) -> str:
    """The path to exec: `program` itself if it names a path, else the first match in the job's
    PATH as the child will see it (relative entries are relative to its run dir); looked up
    here because the C library's posix_spawnp would search the agent's PATH, not the job's.
    FileNotFoundError if there is none."""
    if os.sep in program:
        return program
    found = shutil.which(program, path=_absolute_path_list(job_path, cwd))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return found


class ProgramCache:
    """`resolve_program`, remembered for a moment.

    Searching PATH in the child (posix_spawnp) costs one failed exec per PATH entry before the
    right one (eight of them for `true` under a typical agent's PATH), while the agent waits for
    the child to exec. Found once here, the program costs one exec. Entries expire after `ttl`
    seconds, so a program installed or removed since is seen soon after."""

    def __init__(self, ttl: float = 1.0, size: int = 256) -> None:
        self.ttl = ttl
        self.size = size
        self._found: dict[tuple[str, str], tuple[str, float]] = {}

    def resolve(self, program: str, job_path: str, cwd: str | os.PathLike) -> str:
        if os.sep in program:
            return program
        key = (program, job_path)
        now = time.monotonic()
        hit = self._found.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = resolve_program(program, job_path, cwd)
        if not _has_relative_entry(job_path):  # one with relative entries differs per run dir
            if len(self._found) >= self.size:
                self._found.clear()
            self._found[key] = (found, now + self.ttl)
        return found


class Spawner:
    """os.posix_spawn on the event loop (the fallback where the C library has no chdir file
    action, see `agent.libc_spawn`): the job's run dir as working directory, its output to a
    descriptor the agent opened, stdin from /dev/null, and its own process group (so a cancel
    reaches its children)."""

    def __init__(self) -> None:
        self._home = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def spawn(self, argv: Sequence[str], cwd: str | os.PathLike, env: Mapping[str, str], out_fd: int,
              program: str | None = None) -> Child:
        """Start `argv` in `cwd` (`program`: the path to exec, by default `resolve_program`'s);
        OSError (with the errno of the failed chdir or exec) if it cannot start. Must be called
        from the event loop thread only (see the module doc)."""
        if program is None:
            program = resolve_program(argv[0], env.get("PATH", os.defpath), cwd)
        actions = [
            (os.POSIX_SPAWN_DUP2, self._devnull, 0),
            (os.POSIX_SPAWN_DUP2, out_fd, 1),
            (os.POSIX_SPAWN_DUP2, out_fd, 2),
        ]
        os.chdir(cwd)
        try:
            pid = os.posix_spawn(program, argv, env, file_actions=actions, setpgroup=0, setsigdef=RESET_SIGNALS)
        finally:
            os.fchdir(self._home)
        return Child(pid)


def open_pidfd(pid: int) -> int | None:
    """A pidfd for our unreaped child, or None (which cannot happen; the caller then polls)."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _has_relative_entry(path: str) -> bool:
    return any(not os.path.isabs(entry) for entry in path.split(os.pathsep))


def _absolute_path_list(path: str, cwd: str | os.PathLike) -> str:
    """PATH entries as the child will see them: relative ones are relative to its run dir."""
    return os.pathsep.join(entry if os.path.isabs(entry) else os.path.join(cwd, entry or ".") for entry in path.split(os.pathsep))


def close_inherited_fds() -> None:
    """Make every descriptor above stderr close-on-exec, so that spawned jobs inherit none of
    the agent's (Python's own are already; this covers any inherited from the agent's parent)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed by now
