"""How jobvisor batches work for throughput: every interval, and the small functions that
apply them, in one place.

Thousands of short jobs a second each cost a frame, a commit and an event on their way, and
each of those costs a wake-up of both sides. Batching turns them into a few large ones, but
must never make a lone job wait. The rules, from the job to the client:

* the agent's outbox sends what one loop turn queued as ONE frame, and under sustained load
  at most one frame per FRAME_COALESCE (`Pacer`); while jobs wait in its FIFO (a burst sent
  ahead), one per BACKLOG_COALESCE;
* a frame of nothing but `running` reports lingers up to START_LINGER for the matching ends:
  a job that short sends its end alone (it carries `started_at`);
* the supervisor's websocket to an agent paces its frames like the agent's outbox;
* the store commits a batch at once unless the last one was a burst (BUSY_BATCH items or
  more): then no sooner than the commit interval after it (`batch_delay`); a batch of nothing
  but lazy records (a job's `starting`) lingers up to LAZY_LINGER for what follows, so a
  short job's start, run and end share one commit and one event frame;
* the ends committed within FORGET_GATHER go to their agent in one ForgetJobs.

Each wait ends the moment what it waits for arrives (`linger`), so a lone job's latency pays
at most a longer job's start seen START_LINGER later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

FRAME_COALESCE = 0.002  # seconds between frames of one stream under sustained load
BACKLOG_COALESCE = 0.005  # seconds between an agent's frames while jobs wait in its FIFO
START_LINGER = 0.005  # seconds a frame of starts alone waits for their ends
LAZY_LINGER = 0.005  # seconds a batch of lazy records alone waits for more
BUSY_BATCH = 8  # items in a commit that mean a burst: the next one waits for the interval
FORGET_GATHER = 0.05  # seconds of committed ends told to an agent in one ForgetJobs


async def linger(wake: asyncio.Event, enough: Callable[[], bool], seconds: float) -> None:
    """Wait until `enough()` is true or `seconds` have passed, whichever comes first.

    `wake` is the event the producer sets whenever it adds something: `enough` is asked again
    at each of those, so the wait ends the moment the awaited thing arrives, not at the end of
    the interval. The event is left cleared."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    timer = loop.call_at(deadline, wake.set)
    try:
        while not enough() and loop.time() < deadline:
            await wake.wait()
            wake.clear()
    finally:
        timer.cancel()


class Pacer:
    """When to send the next frame of a stream: at once, unless the last two frames were both
    closer together than `interval` (sustained load), then `interval` after the last one.

    Under load this turns one frame per event into one frame per `interval` with many events
    in it; a lone request/reply exchange is never delayed."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = float("-inf")
        self._busy = False

    def delay(self, now: float) -> float:
        if not self._busy:
            return 0.0
        return max(0.0, self._last + self.interval - now)

    def sent(self, now: float) -> None:
        self._busy = now - self._last < self.interval
        self._last = now


def batch_delay(now: float, last_start: float, last_size: int, *, interval: float, busy_size: int = BUSY_BATCH) -> float:
    """How long the next batch of a writer waits so that more work joins it.

    Only under load, judged by the size of the last batch (at least `busy_size` items): then
    the next batch starts no sooner than `interval` after the last one started. A lone job's
    updates come in batches of one or two and never wait, so its latency is untouched, while a
    burst of thousands of transitions a second costs one commit per `interval`."""
    if last_size < busy_size:
        return 0.0
    return max(0.0, last_start + interval - now)
