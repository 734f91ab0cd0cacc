"""The store on SQLite and on PostgreSQL (the `database` fixture): rows read back like the job,
counts, lazy commits; then SQLite's own fast paths (plain SQL, commits on the loop)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from jobvisor.errors import Unavailable
from jobvisor.states import JobState
from supervisor import sqlite_rows, tables
from supervisor.compute_job import ComputeJob
from supervisor.logstore import LogStore
from supervisor.store import Store


def _job(i: int) -> ComputeJob:
    return ComputeJob(id=f"j{i}", owner="alice", code="shell", spec=b"\x90", driver="local", cpus=1, created_at=1000.0 + i)


@contextlib.asynccontextmanager
async def _store_with_a_queued_job(tmp_path, url: str):
    """An open store with j1 queued, and a list of each commit's events as "JOB STATE"."""
    store = Store(url, LogStore(tmp_path / "logs"))
    published: list[list[str]] = []
    store.on_events = lambda events: published.append([f"{e.job_id} {e.data['state']}" for e in events])
    await store.open()
    try:
        job = _job(1)
        store.insert([job])
        store.record(job, job.initial_transition())
        await store.committed()
        yield store, job, published
    finally:
        await store.close()


def test_the_plain_sql_covers_every_column():
    assert set(sqlite_rows._FIXED + sqlite_rows._MUTABLE) == {c.name for c in tables.jobs.columns}


async def test_jobs_and_transitions_round_trip(tmp_path, database):
    store = Store(database.store_url, LogStore(tmp_path / "logs"))
    await store.open()
    try:
        job = ComputeJob(id="j1", owner="alice", code="shell", spec=ComputeJob.pack_spec({"argv": ["true"]}, {"cpus": 1}),
                         driver="local", cpus=1, created_at=1000.0, name="n", reason="submitted", agent_id="a1")
        plain = ComputeJob(id="j2", owner="bob", code="shell", spec=b"\x90", driver="local", cpus=2, created_at=1001.0)
        store.insert([job, plain])
        store.record(job, job.initial_transition())
        await store.committed()
        store.record(job, job.move(JobState.STARTING, "sent", 1001.5))
        store.record(job, job.move(JobState.RUNNING, "running", 1002.0))
        job.info = {"pid": 42}
        job.exit_code = 0
        job.result = {"answer": [1, 2.5, "x"]}
        job.progress, job.progress_message = 1.0, "done"
        store.record(job, job.move(JobState.COMPLETED, "exit code 0", 1003.0))
        await store.committed()
        back = await store.get_job("j1")
        assert back is not None
        for name in ComputeJob.__slots__:
            if name not in ("run_op", "sent", "log_size", "cancel_reason"):
                assert getattr(back, name) == getattr(job, name), name
        other = await store.get_job("j2")
        assert other is not None and other.result is None and other.info is None and other.state is JobState.QUEUED
        assert [(t["state"], t["reason"], t["at"]) for t in await store.transitions_of("j1")] == [
            ("queued", "submitted", 1000.0), ("starting", "sent", 1001.5), ("running", "running", 1002.0),
            ("completed", "exit code 0", 1003.0),
        ]
    finally:
        await store.close()


async def _counts_in_database(store: Store) -> dict[str, int]:
    from sqlalchemy import func, select
    rows = await store._read(select(tables.jobs.c.state, func.count()).group_by(tables.jobs.c.state))
    return {state: n for state, n in rows}


async def test_counts_follow_every_commit_and_survive_a_reopen(tmp_path, database):
    url = database.store_url
    store = Store(url, LogStore(tmp_path / "logs"))
    await store.open()
    try:
        jobs = [ComputeJob(id=f"j{i}", owner="alice", code="shell", spec=b"\x90", driver="local", cpus=1,
                           created_at=1000.0 + i, max_retries=1) for i in range(5)]
        store.insert(jobs)
        for job in jobs:
            store.record(job, job.initial_transition())
        await store.committed()
        assert store.counts() == {"queued": 5}
        for job in jobs[:4]:
            store.record(job, job.move(JobState.STARTING, "sent", 1010.0))
        store.record(jobs[0], jobs[0].move(JobState.RUNNING, "running", 1011.0))
        store.record(jobs[0], jobs[0].move(JobState.COMPLETED, "exit code 0", 1012.0))
        store.record(jobs[1], jobs[1].move(JobState.LOST, "agent died", 1012.0))
        store.record(jobs[1], jobs[1].retry("retrying", 1012.0))
        store.record(jobs[2], jobs[2].move(JobState.CANCELED, "canceled by user", 1012.0))
        await store.committed()
        expected = {"queued": 2, "starting": 1, "completed": 1, "canceled": 1}
        assert store.counts() == expected == await _counts_in_database(store)
    finally:
        await store.close()
    again = Store(url, LogStore(tmp_path / "logs"))
    await again.open()
    try:
        assert again.counts() == expected
    finally:
        await again.close()


async def test_a_lazy_record_waits_for_what_follows_and_goes_in_its_commit(tmp_path, monkeypatch, database):
    monkeypatch.setattr("supervisor.store.LAZY_LINGER", 30.0)  # only what follows ends the wait here
    async with _store_with_a_queued_job(tmp_path, database.store_url) as (store, job, published):
        commits = store.commits
        store.record(job, job.move(JobState.STARTING, "sent", 1001.0), lazy=True)
        for _ in range(20):
            await asyncio.sleep(0)
        assert store.commits == commits and published == [["j1 queued"]]  # held
        store.record(job, job.move(JobState.RUNNING, "running", 1002.0))  # not lazy: ends the hold
        store.record(job, job.move(JobState.COMPLETED, "exit code 0", 1003.0))
        await store.committed()
        assert store.commits == commits + 1
        assert published == [["j1 queued"], ["j1 starting", "j1 running", "j1 completed"]]


async def test_a_lazy_record_alone_is_committed_when_the_hold_ends(tmp_path, monkeypatch, database):
    monkeypatch.setattr("supervisor.store.LAZY_LINGER", 0.05)
    async with _store_with_a_queued_job(tmp_path, database.store_url) as (store, job, published):
        store.record(job, job.move(JobState.STARTING, "sent", 1001.0), lazy=True)
        for _ in range(200):  # 50 ms hold; up to 10 s on a loaded machine
            if len(published) > 1:
                break
            await asyncio.sleep(0.05)
        assert published == [["j1 queued"], ["j1 starting"]]
        assert (await store.get_job("j1")).state is JobState.STARTING


async def test_small_commits_are_made_inline_and_read_back(tmp_path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", LogStore(tmp_path / "logs"))
    await store.open()
    try:
        assert store._inline is not None
        job = _job(1)
        store.insert([job])
        store.record(job, job.initial_transition())
        await store.committed()
        store.record(job, job.move(JobState.STARTING, "sent", 1001.0))
        await store.committed()
        assert store._inline.commits == 2 and store.commits == 2
        assert (await store.get_job("j1")).state is JobState.STARTING
        assert [t["state"] for t in await store.transitions_of("j1")] == ["queued", "starting"]
        many = [_job(i) for i in range(10, 40)]  # more rows than [database] inline_rows (16): through the thread
        store.insert(many)
        for job in many:
            store.record(job, job.initial_transition())
        await store.committed()
        assert store._inline.commits == 2 and store.commits == 3
        assert store.counts() == {"starting": 1, "queued": 30}
    finally:
        await store.close()


async def test_a_busy_database_sends_the_commit_through_the_thread(tmp_path):
    import sqlite3
    path = tmp_path / "db.sqlite"
    store = Store(f"sqlite+aiosqlite:///{path}", LogStore(tmp_path / "logs"))
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        job = _job(1)
        store.insert([job])
        store.record(job, job.initial_transition())
        done = asyncio.ensure_future(store.committed())
        await asyncio.sleep(0.2)
        assert not done.done()  # the thread waits for the lock (busy_timeout); the loop does not
        other.execute("COMMIT")
        await asyncio.wait_for(done, 10)
        assert store._inline.commits == 0 and store.commits == 1
        assert (await store.get_job("j1")) is not None
    finally:
        other.close()
        await store.close()


async def test_every_so_many_inline_commits_one_goes_through_the_thread_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr("supervisor.sqlite_inline.CHECKPOINT_EVERY", 3)
    path = tmp_path / "db.sqlite"
    store = Store(f"sqlite+aiosqlite:///{path}", LogStore(tmp_path / "logs"))
    await store.open()
    try:
        for i in range(4):
            job = _job(i)
            store.insert([job])
            store.record(job, job.initial_transition())
            await store.committed()
        assert store._inline.commits == 3 and store.commits == 4 and store._inline.since_checkpoint == 0
        # the WAL was checkpointed into the database file: a fresh reader of the file alone sees them
        import sqlite3
        import shutil
        shutil.copy(path, tmp_path / "copy.sqlite")
        copy = sqlite3.connect(tmp_path / "copy.sqlite")
        try:
            assert copy.execute("SELECT count(*) FROM jobs").fetchone()[0] >= 3
        finally:
            copy.close()
    finally:
        await store.close()


async def test_inline_rows_0_sends_every_commit_through_the_thread(tmp_path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", LogStore(tmp_path / "logs"), inline_rows=0)
    await store.open()
    try:
        assert store._inline is None
        job = _job(1)
        store.insert([job])
        store.record(job, job.initial_transition())
        await store.committed()
        assert store.commits == 1 and (await store.get_job("j1")).state is JobState.QUEUED
    finally:
        await store.close()


async def test_a_postgresql_server_gone_and_back_loses_no_update(tmp_path, postgres, postgres_database):
    """Connections cut and refused: the commit's waiter hears Unavailable at once, the update
    stays pending and is committed once the server takes connections again."""
    async with _store_with_a_queued_job(tmp_path, postgres_database.url) as (store, job, published):
        name = postgres_database.url.rsplit("/", 1)[1]
        await postgres.admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await postgres.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        store.record(job, job.move(JobState.STARTING, "sent", 1001.0))
        with pytest.raises(Unavailable, match="cannot be written"):
            await asyncio.wait_for(store.committed(), 30)
        assert published == [["j1 queued"]]  # nothing published that is not committed
        await postgres.admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        for _ in range(300):  # the writer retries with backoff (at most 5 s apart)
            if len(published) > 1:
                break
            await asyncio.sleep(0.05)
        assert published == [["j1 queued"], ["j1 starting"]]
        assert (await store.get_job("j1")).state is JobState.STARTING


async def test_listing_paging_and_agents_read_alike_on_each_database(tmp_path, database):
    store = Store(database.store_url, LogStore(tmp_path / "logs"))
    await store.open()
    try:
        jobs = [ComputeJob(id=f"j{i:02d}", owner="alice" if i % 3 else "bob", code="shell", spec=b"\x90", driver="local",
                           cpus=1, created_at=1000.0 + i) for i in range(12)]
        store.insert(jobs)
        for job in jobs:
            store.record(job, job.initial_transition())
        for job in jobs[:4]:
            store.record(job, job.move(JobState.STARTING, "sent", 1100.0))
        store.add_agent("a1", "alice", "local", "f" * 64, {"pid": 7})
        store.add_agent("a2", "bob", "docker", "e" * 64, {})
        await store.committed()
        newest_first = [j.id for j in await store.list_jobs("alice", [], 5, "")]
        assert newest_first == ["j11", "j10", "j08", "j07", "j05"]
        assert [j.id for j in await store.list_jobs("alice", [], 5, newest_first[-1])] == ["j04", "j02", "j01"]
        assert [j.id for j in await store.list_jobs(None, ["starting"], 10, "")] == ["j03", "j02", "j01", "j00"]
        assert [j.id for j in await store.load_unfinished()] == [j.id for j in jobs]
        store.remove_agent("a2")
        await store.committed()
        (agent,) = await store.load_agents()
        assert (agent.id, agent.user, agent.kind, agent.info) == ("a1", "alice", "local", {"pid": 7})
    finally:
        await store.close()


async def test_jobs_by_name_and_by_id_prefix(tmp_path, database):
    """GET /jobs?name= and ?id_prefix=: the prefix is a range of the primary key, which must
    mean the same on both databases (bytewise: collation C on PostgreSQL)."""
    store = Store(database.store_url, LogStore(tmp_path / "logs"))
    await store.open()
    try:
        ids = ["j01ab0", "j01ab1", "j01abz", "j01ac0", "j01a", "j02ab0", "j01ab-_", "j01aB0"]
        jobs = [ComputeJob(id=job_id, owner="bob" if job_id == "j01abz" else "alice", code="shell", spec=b"\x90",
                           driver="local", cpus=1, created_at=1000.0, name="twin" if job_id.endswith("0") else "")
                for job_id in ids]
        store.insert(jobs)
        await store.committed()

        async def listed(owner=None, **filters):
            return [j.id for j in await store.list_jobs(owner, [], 100, "", **filters)]

        assert await listed(id_prefix="j01ab") == ["j01abz", "j01ab1", "j01ab0", "j01ab-_"]  # newest (largest) first
        assert await listed("alice", id_prefix="j01ab") == ["j01ab1", "j01ab0", "j01ab-_"]
        assert await listed(id_prefix="j01a") == ["j01ac0", "j01abz", "j01ab1", "j01ab0", "j01ab-_", "j01aB0", "j01a"]
        assert await listed(id_prefix="j01aB") == ["j01aB0"]  # ids are compared as they are
        assert await listed(id_prefix="j03") == []
        assert await listed(name="twin") == ["j02ab0", "j01ac0", "j01ab0", "j01aB0"]
        assert await listed(name="twin", id_prefix="j01ab") == ["j01ab0"]
        assert await listed("alice", name="") == await listed("alice")  # no filter
    finally:
        await store.close()
