"""Fair scheduling of queued jobs onto a driver's cpu slots, as plain synchronous code.

Each user has a FIFO; users are served round-robin, one job per turn, so one user's 1,000
queued jobs never starve another user's one job. A per-user cap bounds the cpu slots one user
holds at once. `schedule()` is a function of the queue state: the supervisor's loop calls it
when woken (a submit, a slot freed) and dispatches what it returns.

Jobs sent ahead to an agent while every slot was busy (see `supervisor.dispatch`) leave the
FIFOs for the `ahead` lane: they take the next slots that free, so they stand first in the
queue's order, and to their users they are queued like any other job.
"""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict, deque
from itertools import islice
from typing import Callable, Iterable, Iterator

from jobvisor.ids import JobId, UserId
from jobvisor.states import JobState
from supervisor.compute_job import ComputeJob
from supervisor.ops import RunOp


class DriverQueue:
    def __init__(self, kind: str, cpus_total: int, per_user_cap: int = 0) -> None:
        self.kind = kind
        self.cpus_total = cpus_total
        self.per_user_cap = per_user_cap
        self.used = 0
        self.used_by_user: Counter[UserId] = Counter()
        self._by_user: dict[UserId, OrderedDict[JobId, ComputeJob]] = {}
        self._ring: deque[UserId] = deque()
        self._ahead: OrderedDict[JobId, ComputeJob] = OrderedDict()  # sent ahead, in the order sent

    # ------------------------------------------------------------------ queue

    def push(self, job: ComputeJob, *, front: bool = False) -> None:
        queue = self._by_user.get(job.owner)
        if queue is None:
            queue = self._by_user[job.owner] = OrderedDict()
            self._ring.append(job.owner)
        queue[job.id] = job
        if front:
            queue.move_to_end(job.id, last=False)

    def remove(self, job: ComputeJob) -> bool:
        if self._ahead.pop(job.id, None) is not None:
            return True
        queue = self._by_user.get(job.owner)
        return queue is not None and queue.pop(job.id, None) is not None

    def __len__(self) -> int:
        return len(self._ahead) + sum(len(q) for q in self._by_user.values())

    def queued_jobs(self) -> Iterator[ComputeJob]:
        yield from self._ahead.values()
        for queue in self._by_user.values():
            yield from queue.values()

    # ------------------------------------------------------------------ sent ahead

    def add_ahead(self, job: ComputeJob, *, front: bool = False) -> None:
        self._ahead[job.id] = job
        if front:
            self._ahead.move_to_end(job.id, last=False)

    def ahead(self) -> Iterator[ComputeJob]:
        """The jobs sent ahead, oldest first (each agent starts its own in this order)."""
        return iter(list(self._ahead.values()))

    # ------------------------------------------------------------------ slots

    @property
    def free(self) -> int:
        return self.cpus_total - self.used

    def _reserve(self, job: ComputeJob) -> RunOp:
        self.used += job.cpus
        self.used_by_user[job.owner] += job.cpus
        owner = job.owner

        def release(cpus: int) -> None:
            self.used -= cpus
            self.used_by_user[owner] -= cpus
            if self.used_by_user[owner] <= 0:
                del self.used_by_user[owner]

        return RunOp(job.id, job.cpus, release)

    def reserve(self, job: ComputeJob) -> RunOp:
        """Slots for a job its agent has already (sent ahead and started there, or running when
        the supervisor restarted): taken whatever is free, since its start does not wait."""
        return self._reserve(job)

    def _under_cap(self, user: UserId) -> bool:
        return not self.per_user_cap or self.used_by_user[user] < self.per_user_cap

    def schedule(self, ready: Callable[[UserId], bool] = lambda user: True) -> list[tuple[ComputeJob, RunOp]]:
        """Pick the jobs to start now, reserving their slots (round-robin across users).

        Only users for whom `ready` holds (their agent is connected) are served: the agent is
        acquired first, then slots, so no slot idles while an agent boots."""
        picks: list[tuple[ComputeJob, RunOp]] = []
        stalled = 0
        while self.free > 0 and self._ring and stalled < len(self._ring):
            user = self._ring[0]
            queue = self._by_user[user]
            if not queue:
                self._ring.popleft()
                del self._by_user[user]
                continue
            self._ring.rotate(-1)
            if not ready(user):
                stalled += 1
                continue
            job = next(iter(queue.values()))
            if job.state is not JobState.QUEUED:  # defensive: only queued jobs belong here
                queue.popitem(last=False)
                continue
            fits = job.cpus <= self.free and (
                not self.per_user_cap or self.used_by_user[user] + job.cpus <= max(self.per_user_cap, job.cpus)
            )
            if not fits or not self._under_cap(user):
                stalled += 1
                continue
            queue.popitem(last=False)
            picks.append((job, self._reserve(job)))
            stalled = 0
        return picks

    def waiting_users(self) -> list[UserId]:
        return [u for u in self._ring if self._by_user.get(u)]

    def sole_waiting_user(self) -> UserId | None:
        """The only user with queued jobs, if exactly one has any (then sending ahead cannot
        take a slot from anyone else)."""
        users = self.waiting_users()
        return users[0] if len(users) == 1 else None

    def take(self, user: UserId, count: int) -> list[ComputeJob]:
        """Up to `count` of the user's queued jobs, in order, without slots (sent ahead)."""
        queue = self._by_user.get(user)
        taken: list[ComputeJob] = []
        while queue and len(taken) < count:
            _, job = queue.popitem(last=False)
            if job.state is JobState.QUEUED:
                taken.append(job)
        return taken

    # ------------------------------------------------------------------ positions

    def _order(self) -> tuple[list[UserId], Callable[[int, int], int]]:
        """The ring of users with queued jobs, and where the k-th job (0-based) of the user at
        rank r in it stands (1-based) in the order round-robin would start the jobs.

        That job starts in round k: ahead of it are the jobs sent ahead, every user's first k
        jobs, plus the k-th job of the users ahead in the ring. O(log users + rank) per job."""
        ring = [u for u in self._ring if self._by_user.get(u)]
        lengths = [len(self._by_user[u]) for u in ring]
        sorted_lengths = sorted(lengths)
        prefix = [0]
        for n in sorted_lengths:
            prefix.append(prefix[-1] + n)

        def position(rank: int, k: int) -> int:
            i = bisect.bisect_left(sorted_lengths, k)
            served_before = prefix[i] + k * (len(sorted_lengths) - i)  # sum over users of min(len, k)
            same_round = sum(1 for n in lengths[:rank] if n > k)
            return len(self._ahead) + served_before + same_round + 1

        return ring, position

    def positions_of(self, user: UserId, job_ids: Iterable[JobId]) -> dict[JobId, int]:
        """The positions of some of `user`'s jobs, those still queued. A submit's jobs are at
        the tail of the user's FIFO, so they are looked for from there: answering a submit
        costs its own jobs, not the whole queue (100,000 queued jobs are a normal day)."""
        wanted = set(job_ids)
        out: dict[JobId, int] = {}
        if self._ahead and not wanted.isdisjoint(self._ahead):
            for index, job_id in enumerate(self._ahead):
                if job_id in wanted:
                    out[job_id] = index + 1
                    wanted.discard(job_id)
        queue = self._by_user.get(user)
        wanted &= queue.keys() if queue else set()
        if not wanted:
            return out
        ring, position = self._order()
        rank = ring.index(user)
        last = len(queue) - 1
        for back, job_id in enumerate(reversed(queue)):
            if job_id in wanted:
                out[job_id] = position(rank, last - back)
                wanted.discard(job_id)
                if not wanted:
                    break
        return out

    def head(self, limit: int, user: UserId | None = None) -> list[tuple[ComputeJob, int]]:
        """The first `limit` queued jobs (of `user`, if given) with their positions, in the
        order round-robin would start them; the cost follows `limit`, not the queue's length."""
        out: list[tuple[ComputeJob, int]] = [
            (job, index + 1) for index, job in enumerate(self._ahead.values()) if user is None or job.owner == user
        ][:max(0, limit)]
        limit -= len(out)
        if limit <= 0:
            return out
        ring, position = self._order()
        if user is not None:
            if user not in ring:
                return out
            rank = ring.index(user)
            return out + [(job, position(rank, k)) for k, job in enumerate(islice(self._by_user[user].values(), limit))]
        turns = deque(iter(self._by_user[u].values()) for u in ring)
        offset = len(self._ahead)
        while turns and limit > 0:  # one job per user per round, as schedule() takes them
            jobs = turns.popleft()
            job = next(jobs, None)
            if job is not None:
                offset += 1
                out.append((job, offset))
                limit -= 1
                turns.append(jobs)
        return out

    def position(self, job: ComputeJob) -> int | None:
        if job.state is not JobState.QUEUED:
            return None
        if job.id not in self._ahead and job.id not in self._by_user.get(job.owner, {}):
            return None
        return self.positions_of(job.owner, (job.id,)).get(job.id)
