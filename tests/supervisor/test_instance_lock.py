"""The lock of one supervisor per database, against a real file system and a real PostgreSQL
(the processes that hold it for real are in tests/integration/test_one_supervisor.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import asyncpg
import pytest

from jobvisor.config import load_config
from jobvisor.errors import InUse
from supervisor.instance_lock import (
    ADVISORY_KEYS, APPLICATION_NAME_MAX, LOCK_FILE, DatabaseLock, FileLock, Holder, SupervisorLock,
)


def _config(state_dir, database_url: str = ""):
    env = {"JOBVISOR_SERVER_STATE_DIR": str(state_dir)}
    if database_url:
        env["JOBVISOR_DATABASE_URL"] = database_url
    return load_config(environ=env)


def test_file_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    first = FileLock(tmp_path / LOCK_FILE, f"the state dir {tmp_path}", "give another --state-dir")
    first.acquire(Holder("jobvisor up", 4242, "http://127.0.0.1:19765", "elsewhere"))
    second = FileLock(tmp_path / LOCK_FILE, f"the state dir {tmp_path}", "give another --state-dir")
    with pytest.raises(InUse) as refused:
        second.acquire(Holder.this_process("jobvisor up", "http://127.0.0.1:19768"))
    assert str(refused.value) == (f"the state dir {tmp_path} is in use by another jobvisor up "
                                  "(pid 4242 on elsewhere, http://127.0.0.1:19765); stop it first, or give another --state-dir")
    first.release()
    assert (tmp_path / LOCK_FILE).read_bytes() == b""  # no holder named once it has gone
    second.acquire(Holder.this_process("jobvisor up", "http://127.0.0.1:19768"))
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    second.release()


def test_a_lock_file_never_written_still_refuses(tmp_path):
    """A holder that has not written its pid yet (or wrote garbage) is still a holder."""
    (tmp_path / LOCK_FILE).write_text("not json")
    first = FileLock(tmp_path / LOCK_FILE, "the state dir", "give another --state-dir")
    first.acquire(Holder.this_process("jobvisor up", ""))
    (tmp_path / LOCK_FILE).write_text("not json")
    with pytest.raises(InUse, match=r"^the state dir is in use by another jobvisor; stop it first"):
        FileLock(tmp_path / LOCK_FILE, "the state dir", "give another --state-dir").acquire(Holder())
    first.release()


def test_the_lock_dies_with_its_process_even_under_sigkill(tmp_path):
    """What the kernel guarantees and the design relies on: no stale lock after a crash."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(tmp_path / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        lock = FileLock(tmp_path / LOCK_FILE, "the state dir", "give another --state-dir")
        with pytest.raises(InUse):
            lock.acquire(Holder())
        holder.kill()
        holder.wait(10)
        lock.acquire(Holder.this_process("jobvisor up", ""))
        lock.release()
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()


def test_holder_travels_in_an_application_name():
    holder = Holder("jobvisor up", 20930, "http://127.0.0.1:19765")
    assert holder.application_name() == "jobvisor up pid=20930 http://127.0.0.1:19765"
    assert Holder.of_application_name(holder.application_name(), "127.0.0.1").describe() == \
        "another jobvisor up (pid 20930, http://127.0.0.1:19765)"
    long = Holder("jobvisor up", 20930, "http://" + "a" * 80 + ".example.org:8765")
    assert long.application_name() == "jobvisor up pid=20930"  # the URL left out, not cut
    assert len(long.application_name()) <= APPLICATION_NAME_MAX
    assert Holder.of_application_name("psql", None).describe() == "another jobvisor"
    assert Holder.of_application_name(None, "10.1.2.3").describe() == "another jobvisor"


async def test_supervisor_lock_covers_a_sqlite_file_outside_the_state_dir(tmp_path):
    db = tmp_path / "db" / "jobs.sqlite"
    db.parent.mkdir()
    config = _config(tmp_path / "a", f"sqlite:///{db}")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = await SupervisorLock.take(config, "jobvisor up")
    try:
        with pytest.raises(InUse, match=rf"^the database {db} is in use by another jobvisor up \(pid {os.getpid()}, "
                                        r"http://127.0.0.1:8765\); stop it first, or give another \[database\] url$"):
            await SupervisorLock.take(_config(tmp_path / "b", f"sqlite:///{db}"), "jobvisor up")
        # the refused one let go of what it had taken before (b's state dir)
        other = await SupervisorLock.take(_config(tmp_path / "b"), "jobvisor up")
        await other.release()
    finally:
        await first.release()


async def _lock_holders(url: str) -> list[tuple[int, str]]:
    """The sessions that hold the supervisors' advisory lock: (backend pid, application_name)."""
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2", *ADVISORY_KEYS)
        return [(row["pid"], row["application_name"]) for row in rows]
    finally:
        await conn.close()


async def _lock_sessions(url: str) -> list[str]:
    return [name for _, name in await _lock_holders(url)]


async def test_postgresql_lock_refuses_a_second_supervisor_and_dies_with_its_session(postgres_database, tmp_path):
    url = postgres_database.url
    first = DatabaseLock(url)
    await first.acquire(Holder("jobvisor up", 20930, "http://127.0.0.1:19765"))
    try:
        assert await _lock_sessions(url) == ["jobvisor up pid=20930 http://127.0.0.1:19765"]
        second = DatabaseLock(url)
        with pytest.raises(InUse) as refused:
            await second.acquire(Holder.this_process("jobvisor up", "http://127.0.0.1:19768"))
        shown = url.replace("postgresql+asyncpg", "postgresql")
        assert str(refused.value) == (f"the database {shown} is in use by another jobvisor up (pid 20930, "
                                      "http://127.0.0.1:19765); stop it first, or give another [database] url")
        assert await _lock_sessions(url) == ["jobvisor up pid=20930 http://127.0.0.1:19765"]  # the refused one left
    finally:
        await first.release()
    assert await _lock_sessions(url) == []
    again = DatabaseLock(url)
    await again.acquire(Holder.this_process("jobvisor up", ""))
    await again.release()


async def test_postgresql_lock_taken_again_when_its_session_is_lost(postgres_database):
    url = postgres_database.url
    lock = DatabaseLock(url, check_every=0.2)
    await lock.acquire(Holder("jobvisor up", 1, "http://127.0.0.1:1"))
    try:
        [(backend, name)] = await _lock_holders(url)
        assert name == "jobvisor up pid=1 http://127.0.0.1:1"
        admin = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend) is True
        finally:
            await admin.close()
        for _ in range(100):
            holders = await _lock_holders(url)
            if holders and holders[0][0] != backend:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the lock was not taken again after its session ended: {holders}")
        assert [name for _, name in holders] == ["jobvisor up pid=1 http://127.0.0.1:1"]
        with pytest.raises(InUse):
            await DatabaseLock(url).acquire(Holder())
    finally:
        await lock.release()


async def test_the_bound_url_is_noted_in_the_file_and_the_session(postgres_database, tmp_path):
    """`up` notes its gateway's URL once bound (a port 0 becomes a real one)."""
    lock = await SupervisorLock.take(_config(tmp_path, postgres_database.url), "jobvisor up")
    try:
        assert await _lock_sessions(postgres_database.url) == [f"jobvisor up pid={os.getpid()} http://127.0.0.1:8765"]
        await lock.note_url("http://127.0.0.1:4321")
        assert await _lock_sessions(postgres_database.url) == [f"jobvisor up pid={os.getpid()} http://127.0.0.1:4321"]
        assert json.loads((tmp_path / LOCK_FILE).read_text())["url"] == "http://127.0.0.1:4321"
    finally:
        await lock.release()
    assert await _lock_sessions(postgres_database.url) == []
