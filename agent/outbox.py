"""Outgoing messages, batched: everything queued during one turn of the event loop leaves as ONE
websocket frame (a msgpack array), which is what lets thousands of short jobs per second report
without a frame, a syscall and a wake-up of the supervisor each.

The outbox also measures congestion: bytes queued or being written. The log poller stops
sending while it is over a threshold, so a job printing without end cannot grow the agent's
memory: its output waits in its file instead.

Log bytes travel in their own lane, behind everything else: every other message waits at most
for the one log frame being written (LOG_FRAME_BYTES), never for a backlog of output, so a
job's end reaches the supervisor within milliseconds however much its output lags. Log bytes
that fit in one log frame go ahead of the other messages of the same frame: a short job's
output and its end arrive together, the output first.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator

from jobvisor.errors import InvalidRequest, OpError, TooLarge
from jobvisor.pacing import BACKLOG_COALESCE, FRAME_COALESCE, START_LINGER, Pacer, linger
from jobvisor.codec import Message, encode_frame
from jobvisor.protocol.agent_wire import LogChunk, OpReply, StatusUpdate
from jobvisor.protocol.common import WireError
from jobvisor.states import TERMINAL_STATES, JobState

logger = logging.getLogger(__name__)


def size_hint(message: Message) -> int:
    """A cheap estimate of a message's encoded size (exact sizes cost an encode)."""
    if isinstance(message, LogChunk):
        return len(message.data) + 96
    if isinstance(message, OpReply) and isinstance(message.data, dict):
        data = message.data.get("data")
        if isinstance(data, bytes):
            return len(data) + 160
    return 256


LOG_FRAME_BYTES = 1024 * 1024  # most log bytes in one frame: what a report may wait behind

_RUNNING = str(JobState.RUNNING)
_TERMINAL = frozenset(str(state) for state in TERMINAL_STATES)


class Outbox:
    """Also folds a job's start into its end when both wait for the same frame: the terminal
    report carries `started_at`, which says everything the `running` one did. Under a burst of
    short jobs that is one message less per job for both sides (a quarter of the supervisor's
    work per job was decoding and applying reports)."""

    def __init__(self, max_frame_bytes: int, congestion_bytes: int, start_linger: float = START_LINGER) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.congestion_bytes = congestion_bytes
        self.start_linger = start_linger
        self._items: list[Message | None] = []  # None: a start folded into its end
        self._starts: dict[tuple[str, int], int] = {}  # (job, attempt) -> its `running` report's index
        self._others = 0  # queued messages that are not `running` reports
        self._logs: collections.deque[LogChunk] = collections.deque()  # the log lane
        self._log_bytes = 0  # queued in the log lane
        self._queued_bytes = 0  # both lanes
        self._in_flight_bytes = 0
        self._wake = asyncio.Event()
        self.frames_sent = 0
        # called each time what was queued has been written: the log poller refills at once
        self.on_sent: Callable[[], None] = lambda: None

    def put(self, message: Message) -> None:
        if type(message) is LogChunk:
            self._logs.append(message)
            hint = size_hint(message)
            self._queued_bytes += hint
            self._log_bytes += hint
            self._wake.set()
            return
        report = message.report if type(message) is StatusUpdate else None
        if report is not None and report.state == _RUNNING:
            self._starts[report.job_id, report.attempt] = len(self._items)
        else:
            self._others += 1
            if report is not None and report.started_at is not None and report.state in _TERMINAL:
                start = self._starts.pop((report.job_id, report.attempt), None)
                if start is not None:
                    self._queued_bytes -= size_hint(self._items[start])
                    self._items[start] = None
        self._items.append(message)
        self._queued_bytes += size_hint(message)
        self._wake.set()

    def clear(self) -> None:
        self._items.clear()
        self._logs.clear()
        self._log_bytes = 0
        self._starts.clear()
        self._others = 0
        self._queued_bytes = 0
        self._in_flight_bytes = 0
        self._wake.clear()

    @property
    def congested(self) -> bool:
        return self._queued_bytes + self._in_flight_bytes > self.congestion_bytes

    @property
    def empty(self) -> bool:
        return not self._items and not self._logs and not self._in_flight_bytes

    async def pump(self, send: Callable[[bytes], Awaitable[None]], backlogged: Callable[[], bool] = lambda: False) -> None:
        """Send batches until cancelled or `send` fails (the connection is gone).

        A frame goes out at once unless frames have been following each other closely (a
        sustained stream, not the two or three frames of one short job): then the next waits
        until FRAME_COALESCE seconds after the last, so a busy agent sends a few large frames instead
        of one per job (each frame costs both sides a wake-up). While `backlogged()` (jobs wait
        in the agent's FIFO), frames are BACKLOG_COALESCE apart. Starts alone wait up to
        `start_linger` for their ends (see START_LINGER)."""
        loop = asyncio.get_running_loop()
        pacer = Pacer(FRAME_COALESCE)
        last = float("-inf")
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._items and not self._logs:
                continue  # already sent by the previous turn
            if self._others == 0 and not self._logs and self._starts and self.start_linger > 0:
                await linger(self._wake, lambda: self._others > 0, self.start_linger)
            now = loop.time()
            delay = pacer.delay(now)
            if backlogged():
                delay = max(delay, last + BACKLOG_COALESCE - now)
            if delay > 0:
                await asyncio.sleep(delay)
            last = loop.time()
            pacer.sent(last)
            while self._items or self._logs:
                if self._items:
                    batch, self._items = self._items, []
                    self._starts.clear()
                    self._others = 0
                    sent = self._queued_bytes - self._log_bytes
                    if self._logs and self._log_bytes <= LOG_FRAME_BYTES:
                        logs, size = self._log_frame()
                        batch[:0] = logs
                        sent += size
                else:
                    batch, sent = self._log_frame()
                self._in_flight_bytes = sent
                self._queued_bytes -= sent
                for frame in self.frames(batch):
                    await send(frame)
                    self.frames_sent += 1
                self._in_flight_bytes = 0
                self.on_sent()

    def _log_frame(self) -> tuple[list[Message | None], int]:
        """The next log chunks to send (at least one, and no more than LOG_FRAME_BYTES), and
        their size."""
        batch: list[Message | None] = [self._logs.popleft()]
        size = size_hint(batch[0])
        while self._logs and size + size_hint(self._logs[0]) <= LOG_FRAME_BYTES:
            size += size_hint(self._logs[0])
            batch.append(self._logs.popleft())
        self._log_bytes -= size
        return batch, size

    def frames(self, batch: list[Message | None]) -> Iterator[bytes]:
        """Encode `batch` as few frames as fit under the size limit, order kept."""
        budget = self.max_frame_bytes // 2
        group: list[Message] = []
        size = 0
        for message in batch:
            if message is None:
                continue
            hint = size_hint(message)
            if group and size + hint > budget:
                yield from self._encode(group)
                group, size = [], 0
            group.append(message)
            size += hint
        if group:
            yield from self._encode(group)

    def _encode(self, group: list[Message]) -> Iterator[bytes]:
        """A group that does not fit, or holds a value msgpack cannot pack (a job's result of
        2**70), is split until the culprit stands alone; it is replaced by what says so, and
        every other message of the group still goes (the send loop must never die on one)."""
        try:
            frame = encode_frame(group)
        except (OverflowError, TypeError, ValueError) as exc:
            if len(group) > 1:
                middle = len(group) // 2
                yield from self._encode(group[:middle])
                yield from self._encode(group[middle:])
                return
            replacement = _replaced(group[0], f"it holds a value the wire cannot carry ({exc})")
            if replacement is not None:
                yield encode_frame([replacement])
            return
        if len(frame) <= self.max_frame_bytes:
            yield frame
            return
        if len(group) > 1:
            middle = len(group) // 2
            yield from self._encode(group[:middle])
            yield from self._encode(group[middle:])
            return
        replacement = _too_large(group[0], len(frame), self.max_frame_bytes)
        if replacement is not None:
            yield encode_frame([replacement])


def _too_large(message: Message, size: int, limit: int) -> Message | None:
    detail = f"the {message.TYPE} message is {size} bytes, over the limit of {limit}"
    return _replaced(message, detail, TooLarge)


def _replaced(message: Message, detail: str, error: type[OpError] = InvalidRequest) -> Message | None:
    """What goes instead of a message that cannot be sent: a reply's error, or a report without
    its result and with the reason; nothing for anything else (it is logged)."""
    logger.error("dropping an outgoing %s message: %s", message.TYPE, detail)
    if isinstance(message, OpReply):
        return OpReply(message.op_id, False, error=WireError.of(error(f"the reply cannot be sent: {detail}")))
    if isinstance(message, StatusUpdate):
        report = dataclasses.replace(message.report, result=None, reason=(message.report.reason + "; " if message.report.reason else "") + "result dropped: " + detail)
        return StatusUpdate(report)
    return None
