"""Notice, without a thread or a poll per process, when a process that may not be our child
exits: a pidfd becomes readable then (Linux >= 5.3)."""

from __future__ import annotations

import asyncio
import os
from typing import Callable


class PidWatch:
    """Calls `on_exit()` once, on the event loop, when process `pid` exits."""

    def __init__(self, pid: int, on_exit: Callable[[], None]) -> None:
        self.pid = pid
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._fd = None
            self._loop.call_soon(self._fire)
            return
        self._loop.add_reader(self._fd, self._fire)

    def _fire(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        elif self._on_exit is None:
            return
        callback, self._on_exit = self._on_exit, None
        if callback is not None:
            callback()

    def cancel(self) -> None:
        self._on_exit = None
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
