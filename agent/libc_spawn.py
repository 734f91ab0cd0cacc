"""posix_spawn through the C library itself, for what Python 3.11's `os.posix_spawn` cannot do.

What makes it worth a ctypes binding:

* **The working directory and the output log are set up by the child.** The C library's
  `posix_spawn_file_actions_addchdir_np` (glibc 2.29+, musl 1.1.24+) and `addopen` run in the
  new process between its vfork and its exec, so the agent never changes its own directory
  around a spawn (the log is opened there, and created if the agent has not made it ahead).
* **Little per spawn.** The agent's environment is converted to C pointers once (`EnvBlock`),
  and its stdin is /dev/null, which every child inherits (no file action for it).
* **The GIL is released for the whole call.** ctypes drops it around a foreign call, so a
  worker thread can spawn while the event loop goes on; `os.posix_spawn` holds it while the
  child execs (vfork semantics block the caller until then), which stalled the agent's loop
  for about a third of its time under a burst of short jobs.

`load()` returns None where the C library lacks these functions; the agent then falls back to
`os.posix_spawn` on its loop (see `agent.spawn`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Sequence

# posix_spawnattr_setflags bits: the same values in glibc and musl
_SETPGROUP = 0x02
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08

# The opaque C types are smaller than this everywhere we know of (glibc x86_64: 80 bytes of
# file actions, 336 of attributes, 128 of sigset_t); a roomy buffer keeps us independent of it.
_OPAQUE = 1024

_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_POINTER = ctypes.sizeof(ctypes.c_char_p)


class EnvBlock:
    """The environment shared by every spawn, as C pointers converted once: a spawn copies the
    block and appends its job's own variables. (Converting the agent's forty-odd variables for
    each job took 12 us, half of the Python side of a spawn.)"""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self._entries = list(entries)  # the bytes the pointers point into, kept alive here
        self._count = len(self._entries)
        self._block = (ctypes.c_char_p * self._count)(*self._entries)
        self._types: dict[int, type] = {}

    def with_extra(self, extra: Sequence[bytes]) -> ctypes.Array:
        """A NULL-terminated envp: the block, then `extra`, whose names must not be in the block
        (the C library's getenv takes the first of two)."""
        size = self._count + len(extra) + 1
        array_type = self._types.get(size)
        if array_type is None:
            array_type = self._types[size] = ctypes.c_char_p * size
        envp = array_type()
        ctypes.memmove(envp, self._block, self._count * _POINTER)
        envp[self._count:self._count + len(extra)] = extra  # the array keeps these alive
        return envp


class LibcSpawn:
    """Bound C functions plus one read-only attribute object shared by every spawn: its own
    process group, default dispositions for `reset_signals`, and an empty signal mask."""

    def __init__(self, libc: ctypes.CDLL, reset_signals: Sequence[int]) -> None:
        _stdin_to_null()
        self._spawn = libc.posix_spawn
        self._fa_init = libc.posix_spawn_file_actions_init
        self._fa_destroy = libc.posix_spawn_file_actions_destroy
        self._fa_open = libc.posix_spawn_file_actions_addopen
        self._fa_dup2 = libc.posix_spawn_file_actions_adddup2
        self._fa_chdir = libc.posix_spawn_file_actions_addchdir_np
        c_pid_p = ctypes.POINTER(ctypes.c_int)
        self._spawn.argtypes = [c_pid_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._spawn.restype = ctypes.c_int
        self._fa_open.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
        self._fa_dup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self._fa_chdir.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for fn in (self._fa_init, self._fa_destroy):
            fn.argtypes = [ctypes.c_void_p]

        self._attr = ctypes.create_string_buffer(_OPAQUE)
        default, empty = ctypes.create_string_buffer(_OPAQUE), ctypes.create_string_buffer(_OPAQUE)
        libc.sigemptyset(default)
        libc.sigemptyset(empty)
        for number in reset_signals:
            libc.sigaddset(default, int(number))
        _check(libc.posix_spawnattr_init(self._attr), "posix_spawnattr_init")
        _check(libc.posix_spawnattr_setflags(self._attr, ctypes.c_short(_SETPGROUP | _SETSIGDEF | _SETSIGMASK)), "setflags")
        _check(libc.posix_spawnattr_setpgroup(self._attr, 0), "setpgroup")
        _check(libc.posix_spawnattr_setsigdefault(self._attr, default), "setsigdefault")
        _check(libc.posix_spawnattr_setsigmask(self._attr, empty), "setsigmask")

    def spawn(self, program: bytes, argv: Sequence[bytes], envp: Sequence[bytes] | ctypes.Array, cwd: bytes,
              log_path: bytes) -> int:
        """Start `program` (a path: no PATH search) in `cwd` with stdin from /dev/null (the
        agent's own) and stdout and stderr appended to `log_path` (created, or truncated); its
        pid. `envp`: the environment's entries, or a ready array (`EnvBlock.with_extra`).
        OSError with the errno of whichever step failed in the child (open, chdir or exec).
        Safe to call from several threads."""
        actions = ctypes.create_string_buffer(_OPAQUE)
        _check(self._fa_init(actions), "posix_spawn_file_actions_init")
        try:
            # the open before the chdir: a relative path means the same as in the agent
            for result in (
                self._fa_open(actions, 1, log_path, _LOG_FLAGS, 0o600),
                self._fa_dup2(actions, 1, 2),
                self._fa_chdir(actions, cwd),
            ):
                _check(result, "posix_spawn_file_actions")
            c_argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
            c_envp = envp if isinstance(envp, ctypes.Array) else (ctypes.c_char_p * (len(envp) + 1))(*envp, None)
            pid = ctypes.c_int()
            err = self._spawn(ctypes.byref(pid), program, actions, self._attr, c_argv, c_envp)
        finally:
            self._fa_destroy(actions)
        if err:
            raise OSError(err, os.strerror(err), os.fsdecode(program))
        return pid.value


def _stdin_to_null() -> None:
    """Make this process's stdin /dev/null (the agent reads nothing there), so that every child
    inherits it as its own and no spawn needs a file action for it."""
    null = os.open(os.devnull, os.O_RDONLY)
    if null == 0:  # fd 0 was closed: the new one is it
        os.set_inheritable(0, True)
        return
    try:
        os.dup2(null, 0, inheritable=True)
    finally:
        os.close(null)


def _check(result: int, what: str) -> None:
    if result:
        raise OSError(result, f"{what}: {os.strerror(result)}")


def load(reset_signals: Sequence[int] = ()) -> LibcSpawn | None:
    """The binding, or None if this C library has no posix_spawn_file_actions_addchdir_np."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        libc.posix_spawn_file_actions_addchdir_np  # noqa: B018 (raises AttributeError if absent)
        return LibcSpawn(libc, reset_signals)
    except (OSError, AttributeError):
        return None

