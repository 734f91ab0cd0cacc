"""Fan-out of committed events to subscribers (the gateway's event streams)."""

from __future__ import annotations

import asyncio
import logging

from jobvisor.protocol.events import Event

log = logging.getLogger(__name__)


class EventBus:
    """Each subscriber gets a bounded queue; one that falls too far behind is dropped (its
    stream ends and the gateway reconnects) instead of growing the supervisor's memory."""

    def __init__(self, max_backlog: int = 100_000) -> None:
        self._subscribers: set[asyncio.Queue] = set()
        self._max_backlog = max_backlog

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self._max_backlog)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    def publish(self, events: list[Event]) -> None:
        if not events:
            return
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(events)
            except asyncio.QueueFull:
                log.warning("dropping an event subscriber that is %d batches behind", queue.qsize())
                self._subscribers.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)  # tells the stream to end; the gateway reconnects

    def close(self) -> None:
        """End every stream (the supervisor is stopping): each handler finishes its response
        instead of being cut off mid-stream."""
        for queue in list(self._subscribers):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
