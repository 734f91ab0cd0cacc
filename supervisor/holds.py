"""Holds: queued jobs taken out of their queue for a stated reason, each with its own release.

A held job is still `queued` to its user (its reason says why it waits); it is simply not
offered to the scheduler, so no agent is started for it and no slot is given to it.

    RESTART  the supervisor restarted while the user's agent may still run some of these
             (a run goes out before its `starting` is committed). Released when that agent
             has re-announced its jobs, or when the reconnect grace is over.
    LOGIN    the driver cannot start the user's agent before the user logs in (Slurm over
             SSH). Released by the login, and by nothing else.
    OUTAGE   the driver's backend failed in a way that may pass (an engine that does not
             answer, a refused connection). Released by a timer, with backoff; the jobs'
             reason names the error and the next try.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from jobvisor.ids import JobId, UserId
from jobvisor.states import JobState
from supervisor.compute_job import ComputeJob


class HoldKind(enum.Enum):
    RESTART = "restart"
    LOGIN = "login"
    OUTAGE = "outage"


@dataclass(eq=False)
class Hold:
    kind: HoldKind
    user: UserId
    target: str
    jobs: dict[JobId, ComputeJob] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class Holds:
    def __init__(self, requeue: Callable[[Iterable[ComputeJob]], None]) -> None:
        self._requeue = requeue  # puts still-queued jobs back into their queue and wakes the scheduler
        self._holds: dict[tuple[HoldKind, UserId, str], Hold] = {}

    def add(self, kind: HoldKind, user: UserId, target: str, jobs: Iterable[ComputeJob]) -> Hold:
        hold = self._holds.get((kind, user, target))
        if hold is None:
            hold = self._holds[(kind, user, target)] = Hold(kind, user, target)
        for job in jobs:
            hold.jobs[job.id] = job
        return hold

    def get(self, kind: HoldKind, user: UserId, target: str) -> Hold | None:
        return self._holds.get((kind, user, target))

    def take(self, kind: HoldKind, user: UserId, target: str) -> list[ComputeJob]:
        """End the hold and hand its jobs (those still queued) to the caller."""
        hold = self._holds.pop((kind, user, target), None)
        if hold is None:
            return []
        if hold.timer is not None:
            hold.timer.cancel()
        return [job for job in hold.jobs.values() if job.state is JobState.QUEUED]

    def release(self, kind: HoldKind, user: UserId, target: str) -> None:
        self._requeue(self.take(kind, user, target))

    def release_all(self, kind: HoldKind) -> None:
        for hold_kind, user, target in [key for key in self._holds if key[0] is kind]:
            self.release(hold_kind, user, target)

    def release_later(self, hold: Hold, delay: float) -> None:
        if hold.timer is not None:
            hold.timer.cancel()
        hold.timer = asyncio.get_running_loop().call_later(delay, self.release, hold.kind, hold.user, hold.target)

    def discard(self, job: ComputeJob) -> None:
        """A held job that is canceled leaves its hold at once."""
        for kind in HoldKind:
            hold = self._holds.get((kind, job.owner, job.driver))
            if hold is not None:
                hold.jobs.pop(job.id, None)

    def close(self) -> None:
        for hold in self._holds.values():
            if hold.timer is not None:
                hold.timer.cancel()
