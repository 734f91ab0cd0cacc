"""Lingering over a batch for a moment, so that what is about to follow can join it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


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
