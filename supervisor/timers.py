"""Timers that execute a workflow: once at a time, every interval, or on a cron expression.

Each timer is a row of the `timers` table (loaded at start, written through the store's
batches) and one `loop.call_later` handle for its next firing. A firing calls the injected
`execute(owner, workflow_id, reason)` (the workflow engine's), emits a `system` event and
records its outcome, `last_at` and `next_at`:

    executed  the workflow was started
    skipped   the workflow was still running (the engine answered Conflict), or this timer's
              previous firing had not returned yet; the reason is recorded
    failed    any other error; a workflow that no longer exists stops the timer (no next
              firing; it stays listed, with the reason, until it is deleted)

Firings missed while the supervisor was down are not replayed one by one: a timer whose
`next_at` passed fires once at start (the reason says "catch-up"), then keeps its schedule.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from sqlalchemy import delete, insert, select, update

from jobvisor.errors import Conflict, InvalidRequest, NotFound, OpError
from jobvisor.ids import UserId, new_timer_id
from jobvisor.schedule import Cron, next_every, parse_at, parse_interval
from jobvisor.tasks import Tasks
from supervisor import tables
from jobvisor.isotime import iso
from supervisor.store import Store
from supervisor.system_events import SystemAction, emit_system

log = logging.getLogger(__name__)

Execute = Callable[[UserId, str, str], Awaitable[Any]]
PAST_GRACE = 60.0  # seconds: an `at` this close to now (clocks differ a little) fires at once


class TimerKind(enum.StrEnum):
    AT = "at"
    EVERY = "every"
    CRON = "cron"


class Outcome(enum.StrEnum):
    EXECUTED = "executed"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(eq=False)
class Timer:
    id: str
    owner: UserId
    workflow_id: str
    kind: TimerKind
    created_at: float
    at: float | None = None  # AT: when; EVERY: the anchor its firings count from
    every: float | None = None
    cron: Cron | None = None
    next_at: float | None = None  # None: nothing left to fire (an `at` that fired)
    last_at: float | None = None
    info: dict = field(default_factory=dict)  # created_by, outcome, reason, fired, skipped
    handle: asyncio.TimerHandle | None = None
    running: bool = False  # a firing has not returned yet

    def following(self, now: float) -> float | None:
        """The next firing after `now` (after one at `now` has been handled)."""
        if self.kind is TimerKind.EVERY:
            assert self.at is not None and self.every is not None
            return next_every(self.at, self.every, now)
        if self.kind is TimerKind.CRON:
            assert self.cron is not None
            return self.cron.next_after(now)
        return None

    def row(self) -> dict:
        return {
            "id": self.id, "owner": self.owner, "workflow_id": self.workflow_id, "at": self.at,
            "every": self.every, "cron": self.cron.text if self.cron else None, "next_at": self.next_at,
            "last_at": self.last_at, "created_at": self.created_at, "info": {**self.info, "kind": str(self.kind)},
        }

    @classmethod
    def from_row(cls, row: Any) -> "Timer":
        info = dict(row.info or {})
        kind = TimerKind(info.pop("kind", TimerKind.CRON if row.cron else TimerKind.EVERY if row.every else TimerKind.AT))
        return cls(
            id=row.id, owner=UserId(row.owner), workflow_id=row.workflow_id, kind=kind, created_at=row.created_at,
            at=row.at, every=row.every, cron=Cron.parse(row.cron) if row.cron else None,
            next_at=row.next_at, last_at=row.last_at, info=info,
        )

    def view(self) -> dict:
        return {
            "id": self.id, "owner": self.owner, "workflow_id": self.workflow_id, "kind": str(self.kind),
            "at": iso(self.at) if self.kind is TimerKind.AT else None,
            "every": self.every, "cron": self.cron.text if self.cron else None,
            "next_at": iso(self.next_at), "last_at": iso(self.last_at),
            "last_outcome": self.info.get("outcome"), "last_reason": self.info.get("reason", ""),
            "fired": self.info.get("fired", 0), "skipped": self.info.get("skipped", 0),
            "created_at": iso(self.created_at),
        }


class Timers:
    def __init__(self, store: Store, execute: Execute, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._execute = execute
        self._clock = clock
        self._tasks = Tasks(log, "timer firing")
        self._timers: dict[str, Timer] = {}
        self._closed = False

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Load every timer; one whose firing passed while the supervisor was down fires once now."""
        now = self._clock()
        for row in await self._store.read(select(tables.timers).order_by(tables.timers.c.id)):
            try:
                timer = Timer.from_row(row)
            except (InvalidRequest, ValueError) as exc:
                log.error("timer %s cannot be loaded and is left alone: %s", row.id, exc)
                continue
            self._timers[timer.id] = timer
            if timer.next_at is not None and timer.next_at <= now:
                missed = timer.next_at
                self._tasks.spawn(self._fire(timer, f"catch-up of the firing due at {iso(missed)}, missed while jobvisor was down"))
            else:
                self._arm(timer)
        log.info("%d timers loaded", len(self._timers))

    def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            if timer.handle is not None:
                timer.handle.cancel()
        self._tasks.cancel_all()

    # ------------------------------------------------------------------ requests

    def new(self, workflow_id: str, created_by: UserId, *, at: str = "", every: str = "", cron: str = "") -> Timer:
        """A timer checked but not yet added (400s name the field: at, every, cron). Its owner
        is the workflow's, which the caller sets before `add`."""
        now = self._clock()
        timer = Timer(id=new_timer_id(), owner=created_by, workflow_id=workflow_id, kind=TimerKind.AT, created_at=now,
                      info={"created_by": created_by, "fired": 0, "skipped": 0})
        if at:
            timer.at = parse_at(at)
            if timer.at < now - PAST_GRACE:
                raise InvalidRequest(f"at {at!r} is in the past", field="at")
            timer.next_at = max(timer.at, now)
        elif every:
            timer.kind, timer.every, timer.at = TimerKind.EVERY, parse_interval(every), now
            timer.next_at = now + timer.every
        elif cron:
            timer.kind, timer.cron = TimerKind.CRON, Cron.parse(cron)
            timer.next_at = timer.cron.next_after(now)
        else:
            raise InvalidRequest("give exactly one of at, every and cron", field="at")
        return timer

    async def add(self, timer: Timer) -> Timer:
        """Persist the timer (answered once committed) and arm its first firing."""
        self._store.execute(insert(tables.timers), [timer.row()])
        await self._store.committed()
        self._timers[timer.id] = timer
        self._arm(timer)
        log.info("timer %s of %s: %s for workflow %s, next at %s", timer.id, timer.owner, timer.kind,
                 timer.workflow_id, iso(timer.next_at))
        return timer

    def list(self, owner: UserId | None) -> list[Timer]:
        """Every timer of `owner` (None: everyone's), oldest first."""
        return sorted((t for t in self._timers.values() if owner is None or t.owner == owner), key=lambda t: t.id)

    def get(self, timer_id: str, owner: UserId | None) -> Timer:
        timer = self._timers.get(timer_id)
        if timer is None or (owner is not None and timer.owner != owner):
            raise NotFound(f"no timer {timer_id!r}")
        return timer

    async def delete(self, timer_id: str, owner: UserId | None) -> Timer:
        timer = self.get(timer_id, owner)
        if timer.handle is not None:
            timer.handle.cancel()
        del self._timers[timer.id]
        self._store.execute(delete(tables.timers).where(tables.timers.c.id == timer.id))
        await self._store.committed()
        log.info("timer %s of %s deleted", timer.id, timer.owner)
        return timer

    # ------------------------------------------------------------------ firing

    def _arm(self, timer: Timer) -> None:
        if timer.handle is not None:
            timer.handle.cancel()
            timer.handle = None
        if timer.next_at is None or self._closed:
            return
        delay = max(0.0, timer.next_at - self._clock())
        timer.handle = asyncio.get_running_loop().call_later(delay, self._due, timer)

    def _due(self, timer: Timer) -> None:
        timer.handle = None
        if self._timers.get(timer.id) is not timer:
            return  # deleted
        if timer.next_at is not None and self._clock() < timer.next_at - 0.001:
            self._arm(timer)  # the wall clock moved back: not yet
            return
        self._tasks.spawn(self._fire(timer, f"timer {timer.id} ({timer.kind})"))

    async def _fire(self, timer: Timer, reason: str) -> None:
        """One firing: execute (or skip), record, emit, and arm the next one."""
        now = self._clock()
        scheduled = timer.next_at
        timer.next_at = timer.following(now)
        self._arm(timer)
        if timer.running:
            outcome, detail = Outcome.SKIPPED, "the previous firing of this timer has not returned yet"
        else:
            timer.running = True
            try:
                await self._execute(timer.owner, timer.workflow_id, reason)
                outcome, detail = Outcome.EXECUTED, reason
            except Conflict as exc:
                outcome, detail = Outcome.SKIPPED, f"the workflow is still running ({exc.detail})"
            except NotFound as exc:  # the workflow was deleted: nothing to fire any more
                outcome, detail = Outcome.FAILED, f"{exc.detail}; the timer stops"
                timer.next_at = None
                self._arm(timer)
            except OpError as exc:
                outcome, detail = Outcome.FAILED, exc.detail
            except Exception as exc:  # an engine bug must not stop the timer's next firings
                log.exception("timer %s: executing workflow %s failed", timer.id, timer.workflow_id)
                outcome, detail = Outcome.FAILED, f"internal error: {exc}"
            finally:
                timer.running = False
        if self._timers.get(timer.id) is not timer:
            return  # deleted while it fired
        timer.last_at = now
        counter = "skipped" if outcome is Outcome.SKIPPED else "fired"
        timer.info = {**timer.info, "outcome": str(outcome), "reason": detail, counter: timer.info.get(counter, 0) + 1}
        self._store.execute(update(tables.timers).where(tables.timers.c.id == timer.id),
                            [{"last_at": timer.last_at, "next_at": timer.next_at, "info": timer.row()["info"]}])
        action = {Outcome.EXECUTED: SystemAction.TIMER_FIRED, Outcome.SKIPPED: SystemAction.TIMER_SKIPPED,
                  Outcome.FAILED: SystemAction.TIMER_FAILED}[outcome]
        emit_system(self._store, timer.owner, action, {
            "timer_id": timer.id, "workflow_id": timer.workflow_id, "scheduled_at": iso(scheduled),
            "reason": detail, "next_at": iso(timer.next_at),
        }, workflow_id=timer.workflow_id)
        (log.info if outcome is Outcome.EXECUTED else log.warning)(
            "timer %s of %s, workflow %s: %s (%s); next at %s", timer.id, timer.owner, timer.workflow_id,
            outcome, detail, iso(timer.next_at))
