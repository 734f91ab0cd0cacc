"""The store's events on SQLite and on PostgreSQL (the `database` fixture): transitions become
events in the same commit, emitted events get their ids there, progress is coalesced, ids go
on after a reopen, and pruning by age and count keeps the newest."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from jobvisor.config import EventsConfig
from jobvisor.protocol.events import Event, EventKind
from jobvisor.states import JobState
from supervisor import tables
from supervisor.compute_job import ComputeJob, WorkflowMember
from supervisor.event_log import number, prunable_prefix
from supervisor.logstore import LogStore
from supervisor.store import Store


def _job(i: int, owner: str = "alice", **kw) -> ComputeJob:
    return ComputeJob(id=f"j{i}", owner=owner, code="shell", spec=b"\x90", driver="local", cpus=1, created_at=1000.0 + i, **kw)


async def _open(tmp_path, database, keep_days: float = 0, keep_count: int = 0) -> tuple[Store, list[list[Event]]]:
    """An open store; its background pruning (at open, then hourly) keeps everything unless
    the test says otherwise (its jobs' times are of 1970)."""
    config = EventsConfig(prune_interval=3600, keep_days=keep_days, keep_count=keep_count)
    store = Store(database.store_url, LogStore(tmp_path / "logs"), events=config)
    published: list[list[Event]] = []
    store.on_events = published.append
    await store.open()
    return store, published


async def _rows(store: Store) -> int:
    return (await store._read(select(func.count()).select_from(tables.events)))[0][0]


async def test_transitions_and_emitted_events_share_one_numbering_in_commit_order(tmp_path, database):
    store, published = await _open(tmp_path, database)
    try:
        job = _job(1, member=WorkflowMember("w1", "prep", 1))
        store.insert([job])
        store.record(job, job.initial_transition())
        emitted = store.emit(EventKind.WORKFLOW, "alice", {"state": "running"}, workflow_id="w1")
        await store.committed()
        assert emitted.id == 2 and store.last_event_id == 2
        store.record(job, job.move(JobState.STARTING, "sent", 1001.0))
        store.emit(EventKind.SYSTEM, "bob", {"what": "timer"})
        await store.committed()
        assert [[(e.id, e.kind, e.owner) for e in batch] for batch in published] == [
            [(1, EventKind.TRANSITION, "alice"), (2, EventKind.WORKFLOW, "alice")],
            [(3, EventKind.TRANSITION, "alice"), (4, EventKind.SYSTEM, "bob")],
        ]
        first = published[0][0]
        assert (first.job_id, first.workflow_id, first.at) == ("j1", "w1", 1000.0 + 1)
        assert first.data == {"state": "queued", "attempt": 1, "reason": "", "exit_code": None}
        # what a reader gets back from the database is what was published
        assert await store.list_events(None, 0, 100) == [e for batch in published for e in batch]
        assert [e.id for e in await store.list_events("alice", 0, 100)] == [1, 2, 3]
        assert [e.id for e in await store.list_events("alice", 1, 1)] == [2]
        assert [e.id for e in await store.list_events(None, 0, 100, job_id="j1")] == [1, 3]
        assert await store.list_events("carol", 0, 100) == []
    finally:
        await store.close()
    again, _ = await _open(tmp_path, database)
    try:
        assert again.last_event_id == 4
        again.emit(EventKind.USER, "alice", {"n": 1})
        await again.committed()
        assert [e.id for e in await again.list_events(None, 3, 100)] == [4, 5]  # ids go on after a reopen
    finally:
        await again.close()


async def test_progress_is_coalesced_per_job_per_commit_and_keeps_its_place(tmp_path, database):
    store, published = await _open(tmp_path, database)
    try:
        a, b = _job(1), _job(2)
        store.insert([a, b])
        await store.committed()
        for n in range(50):  # a chatty job: one event for the whole commit
            a.progress, a.progress_message = n / 50, f"step {n}"
            store.progress(a)
        b.progress = 0.5
        store.progress(b)
        store.record(a, a.move(JobState.STARTING, "sent", 1002.0))
        a.progress, a.progress_message = 1.0, "last"
        store.progress(a)
        await store.committed()
        events = published[-1]
        assert [(e.kind, e.job_id) for e in events] == [
            (EventKind.PROGRESS, "j2"), (EventKind.TRANSITION, "j1"), (EventKind.PROGRESS, "j1"),
        ]
        assert events[2].data == {"state": "starting", "attempt": 1, "progress": 1.0, "message": "last"}
        assert [e.id for e in events] == [1, 2, 3] and await _rows(store) == 3
    finally:
        await store.close()


async def test_pruning_by_count_keeps_the_newest(tmp_path, database):
    store, _ = await _open(tmp_path, database, keep_count=10, keep_days=0)
    try:
        for n in range(25):
            store.emit(EventKind.USER, "alice", {"n": n})
        await store.committed()
        assert await store.prune_events() == 15
        assert [e.data["n"] for e in await store.list_events(None, 0, 100)] == list(range(15, 25))
        assert await store.first_event_id() == 16  # what a reader resuming from below 15 is told was pruned
        assert await store.prune_events() == 0
    finally:
        await store.close()


async def test_pruning_by_age_keeps_the_newest_event_and_ids_go_on(tmp_path, database):
    store, _ = await _open(tmp_path, database, keep_count=0, keep_days=1)
    try:
        old = [_job(i) for i in range(3)]  # created_at 1970: their queued transitions are old
        store.insert(old)
        for job in old:
            store.record(job, job.initial_transition())
        await store.committed()
        await store.prune_events()  # (the pruning at open may have gone first)
        assert [e.id for e in await store.list_events(None, 0, 100)] == [3]  # the newest stays, however old
        store.emit(EventKind.USER, "alice", {"fresh": True})
        await store.committed()
        assert await store.prune_events() == 1
        assert [(e.id, e.data) for e in await store.list_events(None, 0, 100)] == [(4, {"fresh": True})]
    finally:
        await store.close()
    again, _ = await _open(tmp_path, database)
    try:
        again.emit(EventKind.USER, "alice", {"after": "reopen"})
        await again.committed()
        assert [e.id for e in await again.list_events(None, 0, 100)] == [4, 5]
    finally:
        await again.close()


async def test_pruning_goes_in_chunks_without_holding_the_writer(tmp_path, database, monkeypatch):
    from supervisor import event_log, store as store_module

    monkeypatch.setattr(event_log, "PRUNE_CHUNK", 7)
    monkeypatch.setattr(store_module, "PRUNE_CHUNK", 7)
    steps: list[int] = []
    store, _ = await _open(tmp_path, database, keep_count=1, keep_days=0)
    real_prune = store.writer.prune

    async def prune(*args):
        steps.append(await real_prune(*args))
        return steps[-1]

    store.writer.prune = prune  # type: ignore[method-assign]
    try:
        for n in range(30):
            store.emit(EventKind.USER, "alice", {"n": n})
        await store.committed()
        assert await store.prune_events() == 29
        assert [n for n in steps if n] == [7, 7, 7, 7, 1]  # (the pruning at open found nothing)
        assert await _rows(store) == 1
    finally:
        await store.close()


def test_prunable_prefix_stops_at_the_first_event_that_stays():
    now = time.time()
    rows = [(1, now - 100), (2, now - 90), (3, now), (4, now - 80), (5, now)]
    assert prunable_prefix(rows, now - 10, 0, 99) == 2  # 4 is old but follows one that stays
    assert prunable_prefix(rows, 0, 4, 99) == 4  # by count
    assert prunable_prefix(rows, now + 1, 0, 3) == 2  # never from keep_from on
    assert prunable_prefix([], now, 10, 99) is None


def test_numbering_skips_replaced_progress():
    job = _job(1)
    t = job.initial_transition()
    events = number([None, t, None], 7)
    assert [(e.id, e.kind, e.data["state"]) for e in events] == [(7, EventKind.TRANSITION, "queued")]


@pytest.mark.parametrize("keep_days, keep_count", [(0, 0)])
async def test_nothing_is_pruned_when_both_limits_are_off(tmp_path, database, keep_days, keep_count):
    store, _ = await _open(tmp_path, database, keep_count=keep_count, keep_days=keep_days)
    try:
        old = [_job(i) for i in range(3)]
        store.insert(old)
        for job in old:
            store.record(job, job.initial_transition())
        await store.committed()
        assert await store.prune_events() == 0 and await _rows(store) == 3
    finally:
        await store.close()


def test_a_transitions_plain_json_is_what_json_dumps_writes():
    import json

    from supervisor import sqlite_rows

    job = _job(1)
    transitions = [job.initial_transition(), job.move(JobState.STARTING, 'sent to "a1" — über', 1001.0)]
    job.exit_code = -9
    transitions.append(job.move(JobState.FAILED, "signal\n9", 1002.0))
    events = number(transitions, 1) + [Event(9, EventKind.USER, "alice", 1.0, None, None, {"x": ["ü", 1.5]})]
    rows = sqlite_rows.event_rows(events)
    assert [row[6] for row in rows] == [json.dumps(e.data) for e in events]


@pytest.mark.parametrize("bad", [{"keep_days": -1}, {"keep_count": -5}, {"prune_interval": 0}])
def test_events_config_refuses_what_would_prune_wrong_or_spin(bad):
    from jobvisor.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[events\]"):
        EventsConfig(**bad)
