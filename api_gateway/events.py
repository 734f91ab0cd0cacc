"""In-process fan-out of committed events to SSE clients, filtered by owner (admins see all).

`EventHub.publish` is synchronous and O(subscribers of that owner + admins): it runs for
every event the supervisor sends, thousands per second. A subscriber that cannot keep up
(its queue is full) is ended with an overflow mark: its stream closes with a `reconnect`
event naming the last id it was sent, and a client that reconnects from there (Last-Event-ID)
reads what it missed from the database, so a slow client is resumed, never silently short.
The same happens to every stream when the gateway's own link to the supervisor's events
comes back after a drop (`resume_all`): what was committed meanwhile is read back likewise.
"""

from __future__ import annotations

import asyncio
import enum

from jobvisor.protocol.events import Event

QUEUE_LIMIT = 10_000


class EndReason(enum.Enum):
    CLOSED = "closed"  # the gateway is stopping
    OVERFLOW = "overflow"  # the client read slower than events came
    RELINKED = "relinked"  # the gateway's link to the supervisor's events dropped and came back
    UNAVAILABLE = "unavailable"  # the supervisor could not answer for the history being sent


class Subscription:
    """One SSE client's view: events for `user` (or all, if admin), optionally one job."""

    def __init__(self, hub: "EventHub", user: str, is_admin: bool, job_id: str | None) -> None:
        self.hub = hub
        self.user = user
        self.is_admin = is_admin
        self.job_id = job_id
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self.ended: EndReason | None = None

    def offer(self, event: Event) -> None:
        if self.job_id is not None and event.job_id != self.job_id:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.end(EndReason.OVERFLOW)

    def end(self, reason: EndReason) -> None:
        """Leave the hub; the reader gets what is queued, then the end. Nothing queued is
        dropped: the stream's last id must be the last event before any gap."""
        self.hub.unsubscribe(self)
        if self.ended is None:
            self.ended = reason
        try:
            self.queue.put_nowait(None)  # wakes a reader waiting on an empty queue
        except asyncio.QueueFull:
            pass  # a full queue: the reader is not waiting, and finds `ended` once it drained it

    async def take(self, timeout: float, most: int) -> list[Event] | None:
        """The next events (at least one, at most `most`), in order; None once the stream has
        ended and everything before its end was taken; TimeoutError after `timeout`."""
        queue = self.queue
        if self.ended is not None and queue.empty():
            return None
        first = await asyncio.wait_for(queue.get(), timeout)
        if first is None:
            return None
        taken = [first]
        while len(taken) < most and not queue.empty():
            item = queue.get_nowait()
            if item is None:  # the end mark is always last: the next take answers None
                break
            taken.append(item)
        return taken

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

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in tuple(self._by_user.get(event.owner, ())):
            sub.offer(event)
        for sub in tuple(self._admins):
            sub.offer(event)

    def _end_all(self, reason: EndReason) -> None:
        subs = list(self._admins) + [s for group in self._by_user.values() for s in group]
        for sub in subs:
            sub.end(reason)

    def resume_all(self) -> None:
        """The link to the supervisor's events is (back) up: events committed while it was
        down never came here, so every stream ends, telling its client to reconnect from its
        last id (and read them from the database)."""
        self._end_all(EndReason.RELINKED)

    def close(self) -> None:
        """End every stream (gateway shutdown)."""
        self._end_all(EndReason.CLOSED)
