"""Jobs spawned in worker threads, their starts handed back to the event loop in batches.

A spawn blocks its caller until the child has exec'd (vfork semantics), a few hundred
microseconds each; in threads that wait overlaps the loop's own work (the C call releases the
GIL, see `agent.libc_spawn`). Results go back through one `call_soon_threadsafe` per batch,
not per job: each such call wakes the loop through its self-pipe.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence

from agent.libc_spawn import LibcSpawn
from agent.spawn import open_pidfd

logger = logging.getLogger(__name__)

# called on the loop: (pid, pidfd or None, None) once started, (None, None, error) if not
Started = Callable[[int | None, int | None, OSError | None], None]


class SpawnPool:
    def __init__(self, loop: asyncio.AbstractEventLoop, libc: LibcSpawn, threads: int) -> None:
        self.loop = loop
        self.libc = libc
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._results: list[tuple[Started, int | None, int | None, OSError | None]] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"spawn-{n}", daemon=True) for n in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()

    def spawn(self, program: bytes, argv: Sequence[bytes], envp: Sequence[bytes], cwd: bytes, log_path: bytes,
              started: Started) -> None:
        """Start the program in a worker thread; `started` is called on the loop."""
        self._requests.put((program, argv, envp, cwd, log_path, started))

    def close(self) -> None:
        for _ in self._threads:
            self._requests.put(None)

    def _work(self) -> None:
        while (request := self._requests.get()) is not None:
            program, argv, envp, cwd, log_path, started = request
            try:
                pid = self.libc.spawn(program, argv, envp, cwd, log_path)
            except OSError as exc:
                result = (started, None, None, exc)
            else:
                result = (started, pid, open_pidfd(pid), None)
            with self._lock:
                first = not self._results
                self._results.append(result)
            if first:
                try:
                    self.loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: the agent is exiting
                    return

    def _deliver(self) -> None:
        with self._lock:
            results, self._results = self._results, []
        for started, pid, pidfd, error in results:
            try:
                started(pid, pidfd, error)
            except Exception:  # one job's bookkeeping must not lose the others' starts
                logger.exception("starting a spawned job failed (pid %s)", pid)
