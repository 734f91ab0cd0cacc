"""Timers on a real store (SQLite and PostgreSQL), with the workflow engine's `execute`
injected: firings, the skip while the workflow runs, failures, persistence and the one
catch-up firing after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from jobvisor.errors import Conflict, InvalidRequest, NotFound
from jobvisor.ids import UserId
from supervisor.logstore import LogStore
from supervisor.store import Store
from supervisor.timers import Timers

ALICE = UserId("alice")


class Engine:
    """Records each execute; raises `fail` when set (Conflict: the workflow still runs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, float]] = []
        self.fail: Exception | None = None

    async def execute(self, owner: str, workflow_id: str, reason: str) -> dict:
        self.calls.append((owner, workflow_id, reason, time.time()))
        if self.fail is not None:
            raise self.fail
        return {"id": workflow_id, "state": "running"}


@contextlib.asynccontextmanager
async def opened(tmp_path, url: str, engine: Engine, clock=time.time):
    store = Store(url, LogStore(tmp_path / "logs"))
    await store.open()
    timers = Timers(store, engine.execute, clock)
    await timers.start()
    try:
        yield store, timers
    finally:
        timers.close()
        await store.close()


async def until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_every_fires_records_and_survives_a_restart_with_one_catch_up(tmp_path, database):
    engine = Engine()
    async with opened(tmp_path, database.store_url, engine) as (store, timers):
        timer = await timers.add(timers.new("w1", ALICE, every="1"))
        await until(lambda: len(engine.calls) >= 2)
        assert [c[:2] for c in engine.calls[:2]] == [("alice", "w1")] * 2
        assert 0.7 < engine.calls[1][3] - engine.calls[0][3] < 1.6
        view = timer.view()
        assert view["last_outcome"] == "executed" and view["fired"] >= 2 and view["kind"] == "every"
        await store.committed()
    fired = len(engine.calls)

    later = time.time() + 3600  # up was down for an hour: one firing, not 3,600
    async with opened(tmp_path, database.store_url, engine, clock=lambda: later) as (store, timers):
        await until(lambda: len(engine.calls) == fired + 1)
        await asyncio.sleep(0.2)
        assert len(engine.calls) == fired + 1 and "catch-up" in engine.calls[-1][2]
        (loaded,) = timers.list(ALICE)
        assert loaded.id == timer.id and loaded.next_at > later and loaded.info["fired"] == fired + 1


async def test_a_running_workflow_is_skipped_and_errors_are_recorded(tmp_path, database):
    engine = Engine()
    engine.fail = Conflict("workflow w1 is running")
    async with opened(tmp_path, database.store_url, engine) as (store, timers):
        timer = await timers.add(timers.new("w1", ALICE, at=_soon()))
        await until(lambda: timer.info.get("outcome") is not None)
        assert timer.view()["last_outcome"] == "skipped" and "still running" in timer.view()["last_reason"]
        assert timer.view()["skipped"] == 1 and timer.next_at is None  # an `at` fires once

        engine.fail = NotFound("no workflow 'w2'")
        other = await timers.add(timers.new("w2", ALICE, at=_soon()))
        await until(lambda: other.info.get("outcome") is not None)
        assert other.view()["last_outcome"] == "failed" and other.view()["last_reason"] == "no workflow 'w2'; the timer stops"

        engine.fail = NotFound("no workflow 'w3'")
        gone = await timers.add(timers.new("w3", ALICE, every="1"))
        await until(lambda: gone.info.get("outcome") is not None)
        assert gone.next_at is None and gone.handle is None  # a deleted workflow's timer fires no more
        await asyncio.sleep(1.3)
        assert gone.info["fired"] == 1
        await store.committed()
    async with opened(tmp_path, database.store_url, Engine()) as (store, timers):
        assert {t.id: t.view()["last_outcome"] for t in timers.list(None)} == {
            timer.id: "skipped", other.id: "failed", gone.id: "failed"}
        assert all(t.next_at is None for t in timers.list(None))


async def test_delete_and_owners(tmp_path, database):
    engine = Engine()
    async with opened(tmp_path, database.store_url, engine) as (store, timers):
        timer = await timers.add(timers.new("w1", ALICE, cron="0 0 1 1 *"))
        assert timer.view()["next_at"].endswith("-01-01T00:00:00.000Z")
        with pytest.raises(NotFound):
            timers.get(timer.id, UserId("bob"))
        with pytest.raises(NotFound):
            await timers.delete(timer.id, UserId("bob"))
        await timers.delete(timer.id, ALICE)
        assert timers.list(None) == []
        with pytest.raises(InvalidRequest) as info:
            timers.new("w1", ALICE, at="2000-01-01T00:00:00Z")
        assert info.value.field == "at" and "in the past" in info.value.detail
    async with opened(tmp_path, database.store_url, engine) as (store, timers):
        assert timers.list(None) == []


def _soon() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 0.5)) + "Z"
