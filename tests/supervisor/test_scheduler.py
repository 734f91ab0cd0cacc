"""Fairness, caps and queue positions of the pure scheduler."""

from __future__ import annotations

from jobvisor.ids import JobId, UserId
from supervisor.compute_job import ComputeJob
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
