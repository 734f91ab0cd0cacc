"""In-process fan-out of job events to SSE clients, filtered by owner (admins see all).

`EventHub.publish` is synchronous and O(subscribers of that owner + admins): it runs for
every event the supervisor sends, thousands per second. A subscriber that cannot keep up
(its queue is full) is dropped with an overflow mark, so its stream ends and the client
reconnects and re-reads state instead of silently missing transitions.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from jobvisor.protocol import JobEvent

QUEUE_LIMIT = 10_000


_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(JobEvent))


def event_json(event: JobEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in _EVENT_FIELDS}


class Subscription:
    """One SSE client's view: events for `user` (or all, if admin), optionally one job."""

    def __init__(self, hub: "EventHub", user: str, is_admin: bool, job_id: str | None) -> None:
        self.hub = hub
        self.user = user
        self.is_admin = is_admin
        self.job_id = job_id
        self.queue: asyncio.Queue[JobEvent | None] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, event: JobEvent) -> None:
        if self.job_id is not None and event.job_id != self.job_id:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self.hub.unsubscribe(self)
            self.end()

    def end(self) -> None:
        """Wake the reader with the end-of-stream mark, even if the queue is full."""
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()

    async def next(self, timeout: float) -> JobEvent | None:
        """The next event; None at the end of the stream; TimeoutError after `timeout`."""
        return await asyncio.wait_for(self.queue.get(), timeout)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.hub.unsubscribe(self)


class EventHub:
    def __init__(self) -> None:
        self._by_user: dict[str, set[Subscription]] = {}
        self._admins: set[Subscription] = set()
        self.published = 0

    def subscribe(self, user: str, is_admin: bool, job_id: str | None = None) -> Subscription:
        sub = Subscription(self, user, is_admin, job_id)
        if is_admin:
            self._admins.add(sub)
        else:
            self._by_user.setdefault(user, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.is_admin:
            self._admins.discard(sub)
            return
        subs = self._by_user.get(sub.user)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_user[sub.user]

    @property
    def subscriber_count(self) -> int:
        return len(self._admins) + sum(len(s) for s in self._by_user.values())

    def publish(self, event: JobEvent) -> None:
        self.published += 1
        for sub in tuple(self._by_user.get(event.owner, ())):
            sub.offer(event)
        for sub in tuple(self._admins):
            sub.offer(event)

    def close(self) -> None:
        """End every stream (gateway shutdown)."""
        subs = list(self._admins) + [s for group in self._by_user.values() for s in group]
        self._admins.clear()
        self._by_user.clear()
        for sub in subs:
            sub.end()
