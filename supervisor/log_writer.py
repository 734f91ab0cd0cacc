"""The log bytes agents send, written to the log store in order by one thread of their own.

They used to go into the store's commits, written before each batch's rows: a job's end then
waited behind whatever log bytes had arrived before it, seconds of them for a job that printed
a lot. Now the rows commit on their own and the logs stream beside them; an end can be
committed before the last bytes of its log are written, which `supervisor.log_tails` (and the
log route) account for.

Writes keep their order (a new attempt's RESTART_LOG empties a log between two chunks), a
failed write (a full disk) is retried with backoff and nothing is dropped, and the bytes
waiting are bounded: past `max_pending` the agents' sockets stop reading (`wait_room`) until
the thread has caught up, so a disk slower than the network holds the agents back instead of
filling the supervisor's memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from jobvisor.ids import JobId
from jobvisor.timing import write_retry_delay
from supervisor.logstore import RESTART_LOG, LogStore

log = logging.getLogger(__name__)

MAX_PENDING = 64 * 1024 * 1024  # bytes received and not yet written before agents are held back


class LogWriter:
    def __init__(self, logs: LogStore, max_pending: int = MAX_PENDING) -> None:
        self.logs = logs
        self.max_pending = max_pending
        self.on_sizes: Callable[[dict[JobId, int]], None] = lambda sizes: None
        self._chunks: list[tuple[JobId, int, bytes]] = []
        self._pending = 0  # bytes queued or being written
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self._waiters: list[asyncio.Future] = []
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-writer")

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="log-writer")

    def write(self, job_id: JobId, offset: int, data: bytes) -> None:
        self._chunks.append((job_id, offset, data))
        self._pending += len(data)
        if self._pending > self.max_pending:
            self._room.clear()
        self._wake.set()

    def restart(self, job_id: JobId) -> None:
        """A new attempt's log starts empty, in order with the chunks around it."""
        self.write(job_id, RESTART_LOG, b"")

    def written(self) -> asyncio.Future:
        """A future that resolves once everything queued so far is written."""
        fut = asyncio.get_running_loop().create_future()
        if self._pending == 0 and not self._chunks:
            fut.set_result(None)
        else:
            self._waiters.append(fut)
        return fut

    def full(self) -> bool:
        return not self._room.is_set()

    async def wait_room(self) -> None:
        await self._room.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._chunks:
                if self._closing:
                    return
                continue
            chunks, self._chunks = self._chunks, []
            try:
                sizes = await loop.run_in_executor(self._executor, self.logs.write_batch, chunks)
            except OSError as exc:
                failures += 1
                log.error("writing %d log chunks failed (%s); retrying", len(chunks), exc)
                self._chunks[:0] = chunks
                if not self._closing or failures <= 3:
                    await asyncio.sleep(write_retry_delay(failures))
                    self._wake.set()
                    continue
                return
            failures = 0
            self._pending -= sum(len(data) for _, _, data in chunks)
            if self._pending <= self.max_pending // 2:
                self._room.set()
            if sizes:
                self.on_sizes(sizes)
            if not self._chunks:
                waiters, self._waiters = self._waiters, []
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
            if self._closing:
                self._wake.set()  # what came meanwhile, then the end

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (bounded by `timeout`), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except (asyncio.TimeoutError, Exception):
                log.exception("the log writer did not finish cleanly (%d bytes not written)", self._pending)
        self._room.set()
        self._executor.shutdown(wait=False)
