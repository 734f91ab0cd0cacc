"""`list` (formats, watch, owners), jobs named by prefix or name, `queue`, `agents`, `status`,
`analysis`, and `get`'s target checks. Against the real gateway, supervisor and agents."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import sys

import pytest

from cli_env import ROOT

pytestmark = pytest.mark.integration

HEADER = ["ID", "NAME", "STATE", "PROGRESS", "SUBMITTED", "RUN", "TIME", "EXIT/REASON"]


async def submit(cli, *argv: str, user: str = "alice") -> str:
    result = await cli.run("submit", *argv, user=user)
    assert result.rc == 0, result.err
    return result.out.strip()


async def test_list_formats_and_owners(real_cli):
    cli = real_cli
    empty = await cli.run("list")
    assert empty.rc == 0 and empty.out.split() == HEADER  # a header, even with no job
    job_id = await submit(cli, "--name", "sim", "--", "sh", "-c", "exit 3")
    other = await submit(cli, "--", "echo", "hello world")
    assert (await cli.run("wait", "-q", job_id, other)).rc == 1
    bobs = await submit(cli, "--", "true", user="bob")

    table = (await cli.run("list")).out.splitlines()
    assert table[0].split() == HEADER
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {job_id, other}
    assert re.fullmatch(rf"{job_id}  sim +failed +\d\d:\d\d:\d\d  +\S+ m?s +exit code 3", rows[job_id]), rows[job_id]
    assert re.search(r"  echo 'hello world'  +completed .* exit code 0$", rows[other]), rows[other]

    admin = (await cli.run("list", user="root")).out.splitlines()
    assert admin[0].split()[:3] == ["ID", "OWNER", "NAME"]
    assert any(line.split()[:2] == [bobs, "bob"] for line in admin)
    # an admin's list has the column even when the jobs shown are one user's (GET /whoami says admin)
    one_owner = (await cli.run("list", "--name", "sim", user="root")).out.splitlines()
    assert one_owner[0].split()[:3] == ["ID", "OWNER", "NAME"] and one_owner[1].split()[:2] == [job_id, "alice"]

    ids = await cli.run("list", "--format", "ids")
    assert ids.out.split() == [other, job_id]
    as_json = json.loads((await cli.run("list", "--format", "json", "--name", "sim")).out)
    assert [j["id"] for j in as_json] == [job_id] and as_json[0]["exit_code"] == 3
    assert (await cli.run("list", "--format", "yaml")).rc == 2


async def test_list_watch_prints_each_change_when_not_a_terminal(real_cli):
    cli = real_cli
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobvisor.cli.main", "list", "--watch", "--interval", "0.2", "--state", "running",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli.environ(), cwd=str(ROOT))
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert first.startswith(b"-- ")
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).split() == [h.encode() for h in HEADER]
        job_id = await submit(cli, "--", "sleep", "30")
        seen = b""
        while job_id.encode() not in seen:
            seen += await asyncio.wait_for(proc.stdout.readline(), 20)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0 and b"Traceback" not in err
    assert b"\x1b[" not in seen + out  # no redraw codes off a terminal
    await cli.run("cancel", job_id)


async def test_list_watch_redraws_in_place_on_a_terminal(real_cli):
    cli = real_cli
    job_id = await submit(cli, "--name", "tty", "--", "sleep", "30")
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobvisor.cli.main", "list", "--watch", "--interval", "0.2",
        stdout=slave, stderr=asyncio.subprocess.PIPE, env=cli.environ(), cwd=str(ROOT))
    os.close(slave)
    output = bytearray()
    loop = asyncio.get_running_loop()
    try:
        while output.count(b"\x1b[H\x1b[2J") < 3:  # three draws, each from the top of a cleared screen
            output += await asyncio.wait_for(loop.run_in_executor(None, os.read, master, 65536), 20)
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        os.close(master)
    draws = output.decode().split("\x1b[H\x1b[2J")[1:]
    assert all("(Ctrl-C ends)" in d and "EXIT/REASON" in d and job_id in d for d in draws[:2]), draws
    await cli.run("cancel", job_id)


async def test_jobs_are_named_by_a_unique_prefix_or_name(real_cli):
    cli = real_cli
    first = await submit(cli, "--name", "prep", "--", "true")
    second = await submit(cli, "--name", "twin", "--", "true")
    third = await submit(cli, "--name", "twin", "--", "true")
    assert (await cli.run("wait", "-q", "prep", second, third)).rc == 0
    shown = await cli.run("show", first[:-2].upper())  # a prefix, in any case
    assert shown.rc == 0 and f"id           {first}" in shown.out.splitlines()
    assert (await cli.run("files", "prep")).rc == 0
    twin = await cli.run("show", "twin")  # a name of two jobs: the newest, and stderr says so
    assert twin.rc == 0 and f"id           {third}" in twin.out.splitlines()
    assert f"'twin' also names 1 older job; using the newest, {third} (completed)" in twin.err
    refused = await cli.run("cancel", "twin")  # but a cancel does not guess
    assert refused.rc == 2 and "'twin' names more than one job" in refused.err
    assert f"{second} (twin) completed, owner alice" in refused.err and f"{third} (twin)" in refused.err
    common = first[: next(i for i in range(len(first)) if first[i] != third[i])]
    ambiguous = await cli.run("logs", common)
    assert ambiguous.rc == 2 and first in ambiguous.err and third in ambiguous.err
    none = await cli.run("get", "nothing-like-it", "output.log")
    assert none.rc == 2 and "no job has the id prefix or name 'nothing-like-it'" in none.err
    assert (await cli.run("show", "prep", user="bob")).rc == 2  # alice's name means nothing to bob


async def test_queue_agents_status_and_analysis(real_cli):
    cli = real_cli
    demo = await submit(cli, "--code", "demo", "--name", "demo", "--params", '{"steps": 20, "step_delay": 0.01}')
    running = [await submit(cli, "--", "sleep", "30") for _ in range(2)]
    waiting = await submit(cli, "--", "true")
    for _ in range(200):
        queue = await cli.run("queue")
        if waiting in queue.out:
            break
        await asyncio.sleep(0.05)
    lines = queue.out.splitlines()
    assert lines[0].split() == ["DRIVER", "CPUS", "USED", "QUEUED"] and lines[1].split()[:2] == ["local", "2/2"]
    assert re.search(rf"^local +\d+ +{waiting} +1$", queue.out, re.MULTILINE), queue.out
    assert json.loads((await cli.run("queue", "--json")).out)["drivers"]["local"]["cpus_total"] == 2

    agents = await cli.run("agents")
    assert agents.out.splitlines()[0].split() == ["ID", "USER", "KIND", "STATE", "JOBS", "HOST", "PID", "CONNECTED"]
    assert re.search(r"^a\S+ +alice +local +connected +\d+ ", agents.out, re.MULTILINE), agents.out
    assert (await cli.run("agents", user="bob")).out.split() == ["ID", "USER", "KIND", "STATE", "JOBS", "HOST", "PID", "CONNECTED"]

    status = await cli.run("status", user=None)  # no token needed
    assert status.rc == 0, status.err
    assert re.match(r"jobvisor \S+ \(protocol \d+\), up \S+ \S+ \(since \d{4}-", status.out), status.out
    assert re.search(r"^jobs +.*\d+ running", status.out, re.MULTILINE) and "event stream connected" in status.out

    for job_id in running:
        await cli.run("cancel", "--no-wait", job_id)
    assert (await cli.run("wait", "-q", "demo")).rc == 0
    analysis = await cli.run("analysis", "demo", "--arg", "column=x")
    assert analysis.rc == 0, analysis.err
    assert json.loads(analysis.out)["rows"] == 21
    bad = await cli.run("analysis", demo, "--arg", "nonsense")
    assert bad.rc == 2 and "--arg 'nonsense': expected KEY=VALUE" in bad.err


async def test_get_checks_where_it_writes(real_cli, tmp_path):
    cli = real_cli
    job_id = await submit(cli, "--name", "maker", "--", "sh", "-c", "mkdir out; echo new > out/r.txt")
    assert (await cli.run("wait", "-q", job_id)).rc == 0
    missing = await cli.run("get", "maker", "out/r.txt", "-o", str(tmp_path / "missing" / "dir" / "x"))
    assert missing.rc == 2 and "the directory" in missing.err and "does not exist" in missing.err
    assert "Traceback" not in missing.err and not (tmp_path / "missing").exists()
    into = await cli.run("get", "maker", "out/r.txt", "-o", str(tmp_path))
    assert into.rc == 0 and (tmp_path / "r.txt").read_text() == "new\n"
    (tmp_path / "r.txt").write_text("mine\n")
    kept = await cli.run("get", "maker", "out/r.txt", "-o", str(tmp_path / "r.txt"))
    assert kept.rc == 2 and "--force" in kept.err and (tmp_path / "r.txt").read_text() == "mine\n"
    forced = await cli.run("get", "--force", "maker", "out/r.txt", "-o", str(tmp_path / "r.txt"))
    assert forced.rc == 0 and (tmp_path / "r.txt").read_text() == "new\n"
    assert not list(tmp_path.glob("*.part"))
    listed = await cli.run("files", "maker")
    assert re.search(r"^out/r.txt +4 +\d\d:\d\d:\d\d$", listed.out, re.MULTILINE), listed.out


async def test_resubmit_and_events_name_jobs_through_the_one_resolver(real_cli):
    cli = real_cli
    job_id = await submit(cli, "--name", "origin", "--", "sh", "-c", "echo $X")
    assert (await cli.run("wait", "-q", "origin")).rc == 0
    events = await cli.run("events", "--job", "origin")
    assert events.rc == 0, events.err
    assert any("transition" in line and line.endswith("completed (exit code 0)") for line in events.out.splitlines()), events.out
    assert all(f"job {job_id}" in line for line in events.out.splitlines())
    again = await cli.run("resubmit", job_id[:-2])  # by a prefix
    assert again.rc == 0, again.err
    assert again.out.strip() != job_id and again.out.strip().startswith("j")
    twice = await cli.run("resubmit", "origin")  # the new job has the name too: the newest is meant
    assert twice.rc == 0 and f"using the newest, {again.out.strip()}" in twice.err
    newest = await cli.run("events", "--job", "origin")
    assert newest.rc == 0 and all(f"job {twice.out.strip()}" in line for line in newest.out.splitlines()), newest


async def test_arrays_in_list_wait_and_cancel(real_cli):
    cli = real_cli
    submitted = await cli.run("submit", "--array", "0-3%2", "--name", "arr", "--",
                              "sh", "-c", "exit $((JOBVISOR_ARRAY_INDEX == 2))")
    array_id = submitted.out.strip()
    other = await submit(cli, "--", "true")
    listed = await cli.run("list", "--array", array_id, "--format", "ids")
    elements = listed.out.split()
    assert len(elements) == 4 and array_id in elements and other not in elements
    waited = await cli.run("wait", "-q", "--array", array_id)
    assert waited.rc == 1, waited  # element 2 failed
    assert [line.split()[1] for line in waited.out.splitlines()] == ["completed", "completed", "failed", "completed"]
    assert waited.out.splitlines()[0].startswith(array_id)  # by index
    by_name = await cli.run("wait", "-q", "--array", "arr")  # the name its elements share
    assert by_name.out == waited.out and "also names" not in by_name.err
    totals = waited.err.splitlines()[-1]  # -q: no progress, but the totals
    assert totals.startswith("4 jobs: ") and "3 completed" in totals and "1 failed" in totals

    sleepers = (await cli.run("submit", "--array", "0-2", "--", "sleep", "30")).out.strip()
    canceled = await cli.run("cancel", "--array", sleepers)
    assert canceled.rc == 0 and len(canceled.out.splitlines()) == 3
    assert all(line.endswith(" canceled") for line in canceled.out.splitlines())
    totals = await cli.run("wait", "--array", sleepers)
    assert totals.rc == 3 and totals.err.splitlines()[-1] == "3 jobs: 3 canceled"  # after a line per job
    lone = await cli.run("wait", "--array", other)
    assert lone.rc == 2 and "is not part of a job array" in lone.err
    assert (await cli.run("cancel", "--array", sleepers, "--all")).rc == 2
