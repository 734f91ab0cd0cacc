"""The real runner: fork/exec on the loop or in worker threads, reaped through pidfds."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from agent import libc_spawn
from agent.jobs import JobRecord
from agent.runner import EndWatch, Runner
from agent.spawn import Child
from job_cmd.codes.base import Launch


@pytest.mark.parametrize("mode", ["libc on the loop", "libc in 2 threads", "os.posix_spawn"])
async def test_spawn_and_reap(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch):
    loop = asyncio.get_running_loop()
    exits: asyncio.Queue = asyncio.Queue()
    if mode == "os.posix_spawn":  # as on a C library without posix_spawn_file_actions_addchdir_np
        monkeypatch.setattr(libc_spawn, "load", lambda *args: None)
    threads = 2 if mode == "libc in 2 threads" else 0
    runner = Runner(loop, {"PATH": "/usr/bin:/bin"}, lambda job, rc: exits.put_nowait((job.job_id, rc)), spawn_threads=threads)
    started: list = []
    for name, argv in (("ok", ["sh", "-c", "echo hi; exit 3"]), ("missing", ["/nonexistent/program"])):
        job = JobRecord(job_id=name, attempt=1, code="shell", run_dir=tmp_path / name)
        runner.prepare_run_dir(job.run_dir)
        runner.spawn(job, Launch(argv=argv, env={}), {}, lambda result, job=job: started.append((job.job_id, result)))
    for _ in range(200):
        if len(started) == 2:
            break
        await asyncio.sleep(0.01)
    outcome = dict(started)
    assert isinstance(outcome["ok"], Child) and isinstance(outcome["missing"], FileNotFoundError)
    assert await asyncio.wait_for(exits.get(), 5) == ("ok", 3)
    assert (tmp_path / "ok" / "output.log").read_text() == "hi\n"
    runner.close()


async def test_a_run_dir_made_ahead_in_the_worker(tmp_path: Path):
    runner = Runner(asyncio.get_running_loop(), {}, lambda job, rc: None)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "output.log").write_text("an earlier attempt's output\n")
    aheads = [runner.prepare_ahead(tmp_path / name) for name in ("a", "b")]
    failing = runner.prepare_ahead(tmp_path / "file" / "x")
    (tmp_path / "file").write_text("not a directory")
    for _ in range(500):
        await asyncio.sleep(0.01)
        if all(ahead.made for ahead in aheads):
            break
    assert all(ahead.made for ahead in aheads) and not failing.made
    assert (tmp_path / "a").is_dir() and (tmp_path / "b").is_dir()
    # with its empty output log (the child then only opens it); an existing one is kept as it is
    assert (tmp_path / "a" / "output.log").read_text() == ""
    assert (tmp_path / "b" / "output.log").read_text() == "an earlier attempt's output\n"
    runner.prepare_run_dir(tmp_path / "a", aheads[0])  # nothing left to do
    with pytest.raises(NotADirectoryError):  # the worker's failure is reported by the start
        runner.prepare_run_dir(tmp_path / "file" / "x", failing)
    late = runner.prepare_ahead(tmp_path / "no-parent" / "x" / "y")
    runner.prepare_run_dir(tmp_path / "no-parent" / "x" / "y", late)  # made whichever way comes first
    assert oct((tmp_path / "no-parent" / "x" / "y").stat().st_mode & 0o777) == "0o700"
    runner.close()


async def test_an_end_is_taken_once_while_another_process_holds_the_pidfd(tmp_path: Path):
    """A child just spawned holds copies of the agent's descriptors until its exec closes them
    (after its parent has resumed), so closing a pidfd alone does not take it out of an epoll
    set: the set would go on reporting its number, which by then may name another file."""
    loop = asyncio.get_running_loop()
    ends: list[JobRecord] = []
    watch = EndWatch(loop, lambda job, child: ends.append(job))
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], {})
    pidfd = os.pidfd_open(pid)
    holder = subprocess.Popen(["sleep", "30"], pass_fds=[pidfd])  # keeps the pidfd's file open
    try:
        job = JobRecord(job_id="j1", attempt=1, code="shell", run_dir=tmp_path / "j1")
        watch.watch(pidfd, job, Child(pid))
        for _ in range(500):
            if ends:
                break
            await asyncio.sleep(0.01)
        assert ends == [job]
        other = os.open(os.devnull, os.O_RDONLY)  # most likely the number the pidfd had
        try:
            for _ in range(10):
                await asyncio.sleep(0.01)
            assert ends == [job]  # once
            os.fstat(other)  # still open: nothing closed it as if it were the pidfd
            assert watch._epoll.poll(0) == []  # nothing left in the set to report
        finally:
            os.close(other)
        os.waitpid(pid, 0)
    finally:
        holder.kill()
        holder.wait()
        watch.close()
