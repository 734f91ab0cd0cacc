"""Fairness, caps and queue positions of the pure scheduler."""

from __future__ import annotations

from jobvisor.ids import JobId, UserId
from supervisor.compute_job import ArrayMember, ComputeJob
from supervisor.scheduler import DriverQueue


def job(owner: str, n: int, cpus: int = 1) -> ComputeJob:
    return ComputeJob(id=JobId(f"{owner}-{n:05d}"), owner=UserId(owner), code="shell",
                      spec=ComputeJob.pack_spec({}, {}), driver="local", cpus=cpus, created_at=0.0)


def all_positions(queue: DriverQueue) -> dict[str, int]:
    """Every queued job's position, each user's jobs asked for at once."""
    mine: dict[UserId, list[JobId]] = {}
    for queued in queue.queued_jobs():
        mine.setdefault(queued.owner, []).append(queued.id)
    return {job_id: position for owner, ids in mine.items() for job_id, position in queue.positions_of(owner, ids).items()}


def test_one_users_thousand_jobs_do_not_starve_anothers_one():
    queue = DriverQueue("local", cpus_total=2)
    for n in range(1000):
        queue.push(job("bulk", n))
    queue.push(job("solo", 0))
    picks = [j.owner for j, _ in queue.schedule()]
    assert sorted(picks) == ["bulk", "solo"]
    assert queue.free == 0 and queue.schedule() == []


def test_positions_follow_round_robin():
    queue = DriverQueue("local", cpus_total=1)
    for n in range(3):
        queue.push(job("a", n))
    queue.push(job("b", 0))
    positions = all_positions(queue)
    assert positions == {"a-00000": 1, "b-00000": 2, "a-00001": 3, "a-00002": 4}
    order = []
    while len(queue):
        ((picked, op),) = queue.schedule()
        order.append(picked.id)
        op.destroy()
    assert order == ["a-00000", "b-00000", "a-00001", "a-00002"]


def test_per_user_cap_and_release():
    queue = DriverQueue("local", cpus_total=4, per_user_cap=1)
    for n in range(3):
        queue.push(job("a", n))
    queue.push(job("b", 0))
    picks = queue.schedule()
    assert sorted(j.owner for j, _ in picks) == ["a", "b"]
    assert queue.used == 2 and queue.schedule() == []
    for _, op in picks:
        op.destroy()
        op.destroy()  # idempotent
    assert queue.used == 0
    assert [j.owner for j, _ in queue.schedule()] == ["a"]


def test_a_job_too_big_for_the_free_slots_waits():
    queue = DriverQueue("local", cpus_total=2)
    queue.push(job("a", 0, cpus=1))
    queue.push(job("b", 0, cpus=2))
    assert [j.id for j, _ in queue.schedule()] == ["a-00000"]
    assert queue.free == 1


def test_removed_job_leaves_the_queue_and_positions():
    queue = DriverQueue("local", cpus_total=1)
    first, second = job("a", 0), job("a", 1)
    queue.push(first)
    queue.push(second)
    assert queue.remove(first)
    assert queue.position(second) == 1 and len(queue) == 1


def test_positions_of_some_jobs_agree_with_the_whole_queue():
    queue = DriverQueue("local", cpus_total=1)
    jobs = {}
    for owner, count in (("a", 5), ("b", 2), ("c", 7)):
        for n in range(count):
            jobs[f"{owner}-{n:05d}"] = job(owner, n)
            queue.push(jobs[f"{owner}-{n:05d}"])
    (started, op), = queue.schedule()  # the ring turns: b is now first, a last
    whole = all_positions(queue)
    assert started.id not in whole and sorted(whole.values()) == list(range(1, 14))
    for owner in ("a", "b", "c"):
        mine = [j for j in whole if j.startswith(owner)]
        assert queue.positions_of(UserId(owner), mine) == {j: whole[j] for j in mine}
        assert queue.positions_of(UserId(owner), mine[-2:]) == {j: whole[j] for j in mine[-2:]}
    assert queue.positions_of(UserId("a"), [started.id, JobId("c-00001")]) == {}  # not queued, or not a's
    assert queue.positions_of(UserId("nobody"), [JobId("a-00001")]) == {}
    assert queue.position(jobs["c-00003"]) == whole["c-00003"]


def test_the_head_of_the_queue_is_the_round_robin_order():
    queue = DriverQueue("local", cpus_total=1)
    for owner, count in (("a", 4), ("b", 1), ("c", 3)):
        for n in range(count):
            queue.push(job(owner, n))
    whole = all_positions(queue)
    head = [(j.id, position) for j, position in queue.head(6)]
    assert head == sorted(whole.items(), key=lambda item: item[1])[:6]
    assert [p for _, p in head] == [1, 2, 3, 4, 5, 6]
    mine = [(j.id, position) for j, position in queue.head(2, UserId("c"))]
    assert mine == [("c-00000", whole["c-00000"]), ("c-00001", whole["c-00001"])]
    assert queue.head(0) == [] and queue.head(5, UserId("nobody")) == []
    assert len(queue.head(100)) == 8


def element(owner: str, array: str, index: int, cap: int) -> ComputeJob:
    member = ArrayMember(array, index, cap)
    return ComputeJob(id=JobId(f"{array}-{index:05d}"), owner=UserId(owner), code="shell",
                      spec=ComputeJob.pack_spec({}, {}), driver="local", cpus=1, created_at=0.0, member=member)


def test_a_capped_array_holds_at_most_its_cap_and_starts_in_index_order():
    queue = DriverQueue("local", cpus_total=8)
    for index in range(100):
        queue.push(element("a", "arr", index, cap=3))
    picks = queue.schedule()
    assert [j.member.index for j, _ in picks] == [0, 1, 2]
    assert queue.schedule() == [] and len(queue) == 97 and queue.free == 5
    started = [j.member.index for j, _ in picks]
    running = {j.member.index: op for j, op in picks}
    while len(queue):  # two slots free at once: the next two, still in order
        for index in sorted(running)[:2]:
            running.pop(index).destroy()
        more = queue.schedule()
        assert len(more) <= 2 and len(running) + len(more) <= 3
        started += [j.member.index for j, _ in more]
        running.update({j.member.index: op for j, op in more})
    assert started == list(range(100))


def test_a_users_other_jobs_pass_their_capped_array_and_others_arrays_are_their_own():
    queue = DriverQueue("local", cpus_total=8)
    for index in range(5):
        queue.push(element("a", "arr", index, cap=1))
    queue.push(job("a", 0))
    for index in range(3):
        queue.push(element("b", "brr", index, cap=2))
    picked = sorted(j.id for j, _ in queue.schedule())
    assert picked == ["a-00000", "arr-00000", "brr-00000", "brr-00001"]
    assert queue.position(next(j for j in queue.queued_jobs() if j.id == "arr-00001")) is None  # waits for its cap
    assert queue.take_ahead(UserId("a"), 5) == []  # a capped array's elements are never sent ahead
    taken = queue.take(UserId("a"), 10)  # to hold or fail them: parked ones too, in order
    assert [j.id for j in taken] == ["arr-00001", "arr-00002", "arr-00003", "arr-00004"]


def test_a_removed_parked_element_leaves_its_lane():
    queue = DriverQueue("local", cpus_total=2)
    elements = [element("a", "arr", index, cap=1) for index in range(3)]
    for e in elements:
        queue.push(e)
    ((first, op),) = queue.schedule()
    assert queue.remove(elements[1]) and not queue.remove(elements[1])
    op.destroy()
    ((nxt, _),) = queue.schedule()
    assert first is elements[0] and nxt is elements[2] and len(queue) == 0
