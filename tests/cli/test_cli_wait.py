"""`jobvisor wait JOB...` exits with how its jobs ended (0 completed, 1 failed, 3 canceled,
4 timed out, 5 lost, 124 its own --timeout, 2 a usage error or an unknown job), and `cancel`
prints the state its jobs ended in. Against the real gateway, supervisor and agents."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

pytestmark = pytest.mark.integration


async def submit(cli, *argv: str) -> str:
    result = await cli.run("submit", *argv)
    assert result.rc == 0, result.err
    return result.out.strip()


async def test_each_ending_has_its_exit_status(real_cli):
    cli = real_cli
    ok = await submit(cli, "--", "true")
    bad = await submit(cli, "--", "sh", "-c", "exit 7")
    slow = await submit(cli, "--walltime", "00:00:01", "--", "sleep", "30")
    assert (await cli.run("wait", "-q", ok)).rc == 0
    failed = await cli.run("wait", "-q", bad)
    assert failed.rc == 1 and failed.out.startswith("failed (exit code 7)"), failed
    timed_out = await cli.run("wait", "-q", slow)
    assert timed_out.rc == 4 and timed_out.out.startswith("timed_out"), timed_out

    sleeper = await submit(cli, "--", "sleep", "30")
    waiter = cli.start("wait", "-q", sleeper)
    await cli.wait_for_subscribers(1)
    assert (await cli.run("cancel", sleeper)).out.strip() == f"{sleeper} canceled"
    canceled = await asyncio.wait_for(waiter, 30)
    assert canceled.rc == 3 and canceled.out.startswith("canceled"), canceled

    # several jobs: a line each, id first; a failure outranks a cancel and a completion
    several = await cli.run("wait", "-q", ok, bad, sleeper)
    assert several.rc == 1, several
    lines = sorted(several.out.splitlines())
    assert f"{ok} completed (exit code 0)" in lines and f"{bad} failed (exit code 7)" in lines
    assert f"{sleeper} canceled: canceled by user" in lines  # its SIGTERM was the cancel's
    assert len(lines) == 3
    assert (await cli.run("wait", "-q", ok, sleeper)).rc == 3
    assert (await cli.run("wait", "-q", sleeper, slow)).rc == 4


async def test_a_lost_job_is_5(real_cli, real):
    cli = real_cli
    job_id = await submit(cli, "--", "sleep", "60")
    await real.wait_state(job_id, "running")
    waiter = cli.start("wait", job_id)
    await cli.wait_for_subscribers(1)
    _, agents, _ = await real.call("GET", "/agents")
    (agent,) = agents["agents"]
    os.kill(agent["pid"], signal.SIGKILL)
    lost = await asyncio.wait_for(waiter, 60)
    assert lost.rc == 5 and lost.out.startswith("lost"), lost


async def test_its_own_timeout_is_124_and_unknown_jobs_are_2(real_cli):
    cli = real_cli
    job_id = await submit(cli, "--name", "long", "--", "sleep", "30")
    timeout = await cli.run("wait", "--timeout", "0.5", "-q", "long")  # by its name
    assert timeout.rc == 124 and f"still not ended: {job_id}" in timeout.err, timeout
    unknown = await cli.run("wait", "j00000000000000000000")
    assert unknown.rc == 2 and "no job j00000000000000000000" in unknown.err
    unknown = await cli.run("wait", "nosuchname")
    assert unknown.rc == 2 and "no job has the id prefix or name 'nosuchname'" in unknown.err
    usage = await cli.run("wait")
    assert usage.rc == 2 and "wait takes jobs" in usage.err
    assert (await cli.run("wait", "--timeout", "soon", job_id)).rc == 2  # argparse's usage error
    helped = await cli.run("wait", "--help")
    assert "124  --timeout passed" in helped.out and "5    a job was lost" in helped.out
    assert "(failed, timed out, lost, canceled, completed)" in helped.out
    await cli.run("cancel", job_id)


async def test_cancel_by_state_and_all(real_cli):
    cli = real_cli
    first, second, third = [await submit(cli, "--", "sleep", "30") for _ in range(3)]
    bobs = (await cli.run("submit", "--", "sleep", "30", user="bob")).out.strip()
    for _ in range(200):  # the local driver has a cpu for each of two jobs: the rest wait in the queue
        queued = (await cli.run("list", "--state", "queued", "--format", "ids")).out.split()
        if queued == [third]:
            break
        await asyncio.sleep(0.05)
    assert queued == [third]
    by_state = await cli.run("cancel", "--state", "queued")
    assert by_state.rc == 0 and by_state.out == f"{third} canceled\n", by_state
    assert (await cli.run("cancel", "--state", "completed")).rc == 2  # an ended job cannot be canceled
    assert (await cli.run("cancel")).rc == 2 and (await cli.run("cancel", "--all", first)).rc == 2

    mine = await cli.run("cancel", "--all", user="root")  # an admin sees alice's and bob's, but means theirs
    assert mine.rc == 0 and mine.out == "" and "no jobs to cancel" in mine.err
    assert (await cli.run("cancel", "--all", "--owner", "alice", "--all-users", user="root")).rc == 2
    alices = await cli.run("cancel", "--all", "--owner", "alice", user="root")
    assert alices.rc == 0, alices
    assert sorted(alices.out.splitlines()) == sorted([f"{first} canceled", f"{second} canceled"])
    nothing = await cli.run("cancel", "--all")
    assert nothing.rc == 0 and nothing.out == "" and "no jobs to cancel" in nothing.err
    assert (await cli.run("cancel", "--all", "--all-users", user="root")).out == f"{bobs} canceled\n"
