"""Fair scheduling of queued jobs onto a driver's cpu slots, as plain synchronous code.

Each user has a FIFO; users are served round-robin, one job per turn, so one user's 1,000
queued jobs never starve another user's one job. A per-user cap bounds the cpu slots one user
holds at once. `schedule()` is a function of the queue state: the supervisor's loop calls it
when woken (a submit, a slot freed) and dispatches what it returns.

Jobs sent ahead to an agent while every slot was busy (see `supervisor.dispatch`) leave the
FIFOs for the `ahead` lane: they take the next slots that free, so they stand first in the
queue's order, and to their users they are queued like any other job.

A job array with a cap (`submit --array 1-100%10`) holds at most `cap` slots at once. An
element that reaches the head of its user's FIFO while its array is at the cap is parked in
the array's lane (in order); a user's lanes under their cap are served before the FIFO, since
every parked element stood ahead of what is in the FIFO now. Parking costs each element O(1),
so a capped array of 100,000 elements does not make every pass walk it. Elements of a capped
array are never sent ahead (an agent would start them whenever any slot freed).
"""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict, deque
from itertools import islice
from typing import Callable, Iterable, Iterator

from jobvisor.ids import JobId, UserId
from jobvisor.states import JobState
from supervisor.compute_job import ArrayMember, ComputeJob
from supervisor.ops import RunOp


def array_cap_of(job: ComputeJob) -> tuple[str, int] | None:
    """(array id, cap) of an element of a capped array; None for any other job."""
    member = job.member
    if isinstance(member, ArrayMember) and member.cap > 0:
        return member.array_id, member.cap
    return None


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
        self.used_by_array: Counter[str] = Counter()  # slots held by the elements of each capped array
        # each user's parked elements of capped arrays: array id -> its elements, in order
        self._lanes: dict[UserId, dict[str, OrderedDict[JobId, ComputeJob]]] = {}

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
        if queue is not None and queue.pop(job.id, None) is not None:
            return True
        return self._unpark(job)

    def __len__(self) -> int:
        return len(self._ahead) + sum(len(q) for q in self._by_user.values()) + sum(
            len(lane) for lanes in self._lanes.values() for lane in lanes.values())

    def queued_jobs(self) -> Iterator[ComputeJob]:
        yield from self._ahead.values()
        for queue in self._by_user.values():
            yield from queue.values()
        for lanes in self._lanes.values():
            for lane in lanes.values():
                yield from lane.values()

    # ------------------------------------------------------------------ capped arrays

    def _at_cap(self, job: ComputeJob) -> bool:
        capped = array_cap_of(job)
        return capped is not None and self.used_by_array[capped[0]] >= capped[1]

    def _park(self, job: ComputeJob) -> None:
        """Set an element of an array at its cap aside, in its array's lane."""
        array_id = job.member.array_id  # type: ignore[union-attr]
        self._lanes.setdefault(job.owner, {}).setdefault(array_id, OrderedDict())[job.id] = job

    def _unpark(self, job: ComputeJob) -> bool:
        lanes = self._lanes.get(job.owner)
        member = job.member
        if lanes is None or not isinstance(member, ArrayMember):
            return False
        lane = lanes.get(member.array_id)
        if lane is None or lane.pop(job.id, None) is None:
            return False
        if not lane:
            del lanes[member.array_id]
            if not lanes:
                del self._lanes[job.owner]
        return True

    def _head(self, user: UserId) -> tuple[ComputeJob | None, bool]:
        """The user's next job, and whether it is parked: the first parked element of an array
        now under its cap (it stood ahead of the whole FIFO), else the FIFO's head; heads of
        arrays at their cap are parked on the way. None: everything the user has waits for its
        array's cap."""
        lanes = self._lanes.get(user)
        if lanes:
            for lane in lanes.values():
                job = next(iter(lane.values()))
                if not self._at_cap(job):
                    return job, True
        queue = self._by_user[user]
        while queue:
            job = next(iter(queue.values()))
            if job.member is None or not self._at_cap(job):
                return job, False
            queue.popitem(last=False)
            self._park(job)
        return None, False

    def _pop(self, job: ComputeJob, parked: bool) -> None:
        """Take `job` (the head `_head` returned) out of its lane or FIFO."""
        if parked:
            self._unpark(job)
        else:
            self._by_user[job.owner].popitem(last=False)

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
        capped = array_cap_of(job) if job.member is not None else None
        if capped is not None:
            self.used_by_array[capped[0]] += 1

        def release(cpus: int) -> None:
            self.used -= cpus
            self.used_by_user[owner] -= cpus
            if self.used_by_user[owner] <= 0:
                del self.used_by_user[owner]
            if capped is not None:
                self.used_by_array[capped[0]] -= 1
                if self.used_by_array[capped[0]] <= 0:
                    del self.used_by_array[capped[0]]

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
            lanes = self._lanes.get(user)
            if not queue and not lanes:
                self._ring.popleft()
                del self._by_user[user]
                continue
            self._ring.rotate(-1)
            if not ready(user):
                stalled += 1
                continue
            if lanes is None and (job := next(iter(queue.values()))).member is None:
                parked = False  # the common case, kept short: a FIFO's head that is no array's
            else:
                job, parked = self._head(user)
                if job is None:  # all of it waits for its arrays' caps
                    stalled += 1
                    continue
            if job.state is not JobState.QUEUED:  # defensive: only queued jobs belong here
                self._pop(job, parked)
                continue
            fits = job.cpus <= self.free and (
                not self.per_user_cap or self.used_by_user[user] + job.cpus <= max(self.per_user_cap, job.cpus)
            )
            if not fits or not self._under_cap(user):
                stalled += 1
                continue
            if parked:
                self._unpark(job)
            else:
                queue.popitem(last=False)
            picks.append((job, self._reserve(job)))
            stalled = 0
        return picks

    def waiting_users(self) -> list[UserId]:
        return [u for u in self._ring if self._by_user.get(u) or u in self._lanes]

    def sole_waiting_user(self) -> UserId | None:
        """The only user with queued jobs, if exactly one has any (then sending ahead cannot
        take a slot from anyone else)."""
        users = self.waiting_users()
        return users[0] if len(users) == 1 else None

    def take(self, user: UserId, count: int) -> list[ComputeJob]:
        """Up to `count` of the user's queued jobs, parked ones first, without slots (to hold
        or fail them)."""
        taken: list[ComputeJob] = []
        lanes = self._lanes.get(user, {})
        while lanes and len(taken) < count:
            lane = next(iter(lanes.values()))
            job = next(iter(lane.values()))
            self._unpark(job)
            if job.state is JobState.QUEUED:
                taken.append(job)
        return taken + self._take_fifo(user, count - len(taken), ahead=False)

    def take_ahead(self, user: UserId, count: int) -> list[ComputeJob]:
        """Up to `count` of the user's queued jobs, in order, to send ahead: it stops at an
        element of a capped array, which must wait for a slot of its array."""
        return self._take_fifo(user, count, ahead=True)

    def _take_fifo(self, user: UserId, count: int, *, ahead: bool) -> list[ComputeJob]:
        queue = self._by_user.get(user)
        taken: list[ComputeJob] = []
        while queue and len(taken) < count:
            job = next(iter(queue.values()))
            if ahead and array_cap_of(job) is not None:
                break
            queue.popitem(last=False)
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
