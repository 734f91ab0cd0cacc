"""Client commands as subprocesses against the gateway and the real supervisor and agents
(`real_cli`), or the fake supervisor where a test needs its controls (`cli`)."""

from __future__ import annotations

import argparse
import asyncio
import io
import urllib.error

import pytest

from jobvisor.cli.client import _error_from
from jobvisor.cli.errors import CliError
from jobvisor.cli.jobs import build_job
from jobvisor.cli.waiting import render_progress
from jobvisor.cli.main import build_parser


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["submit", *argv])


def test_build_job_from_options():
    job = build_job(parse("--cpus", "2", "--mem", "512M", "--walltime", "00:10:00", "--name", "n",
                          "--max-retries", "2", "--driver", "local", "--", "echo", "-n", "hi"))
    assert job == {
        "code": "shell", "params": {"argv": ["echo", "-n", "hi"]},
        "resources": {"cpus": 2, "memory": "512M", "walltime": "00:10:00"},
        "driver": "local", "name": "n", "max_retries": 2,
    }
    job = build_job(parse("--code", "python", "--entry", "pkg.mod:run", "--params", '{"x": 1}'))
    assert job == {"code": "python", "params": {"entry": "pkg.mod:run", "args": {"x": 1}}}
    assert build_job(parse("--code", "demo", "--params", '{"steps": 3}')) == {"code": "demo", "params": {"steps": 3}}
    with pytest.raises(CliError, match="nothing to run"):
        build_job(parse())
    with pytest.raises(CliError, match="not valid JSON"):
        build_job(parse("--code", "demo", "--params", "{oops"))
    assert build_job(parse("--walltime", "1h30m", "--", "true"))["resources"] == {"walltime": "1h30m"}
    with pytest.raises(CliError, match=r"say its unit: 30m \(minutes, as Slurm's --time=30\) or 30s") as bare:
        build_job(parse("--walltime", "30", "--", "true"))
    assert bare.value.status == 2


def test_render_progress():
    assert render_progress("running", 0.5, "half", width=10) == "[#####.....]  50% running: half"
    assert render_progress("queued", None) == "queued"
    assert render_progress("running", 1.7, width=4) == "[####] 100% running"


async def test_submit_show_list_cancel(real_cli):
    cli = real_cli
    submitted = await cli.run("submit", "--cpus", "2", "--name", "hello", "--", "sleep", "30")
    assert submitted.rc == 0, submitted.err
    job_id = submitted.out.strip()
    assert job_id.startswith("j") and "\n" not in job_id

    shown = await cli.run("show", job_id)
    assert shown.rc == 0, shown.err
    fields = dict(line.split(None, 1) for line in shown.out.splitlines() if not line.startswith(" ") and " " in line)
    for key in ("reason", "info", "state", "resources", "created_at"):
        assert key in fields, shown.out
    assert "history" in shown.out.splitlines()
    assert fields["name"] == "hello" and fields["command"] == "sleep 30" and fields["resources"] == "cpus 2"
    assert ("queue_position" in fields) == (fields["state"] == "queued")  # a place in the queue, while queued

    for _ in range(100):
        listed = await cli.run("list", "--state", "running")
        if job_id in listed.out:
            break
    assert listed.rc == 0 and job_id in listed.out and "STATE" in listed.out
    other = await cli.run("list", user="bob")
    assert other.rc == 0 and job_id not in other.out
    second = (await cli.run("submit", "--", "true")).out.strip()
    cut = await cli.run("list", "--limit", "1", "--format", "ids")
    assert cut.out.split() == [second] and "the newest 1 jobs shown; there are more" in cut.err
    whole = await cli.run("list", "--limit", "2", "--format", "ids")
    assert whole.out.split() == [second, job_id] and whole.err == ""

    canceled = await cli.run("cancel", job_id)  # prints the state after the cancel: its agent stopped it
    assert canceled.rc == 0 and canceled.out.strip() == f"{job_id} canceled", canceled
    waited = await cli.run("wait", job_id)
    assert waited.rc == 3 and waited.out.startswith("canceled")
    again = await cli.run("cancel", job_id)
    assert again.rc == 1 and again.err == f"jobvisor: job {job_id} already ended (canceled)\n"


async def test_cancel_of_a_queued_job_is_at_once(cli):
    job_id = (await cli.run("submit", "--", "true")).out.strip()
    canceled = await cli.run("cancel", job_id)
    assert canceled.rc == 0 and canceled.out.strip() == f"{job_id} canceled"


async def test_errors_are_one_clear_line(real_cli):
    cli = real_cli
    missing = await cli.run("show", "j00000000000000000000")
    assert missing.rc == 1 and "HTTP 404" in missing.err
    invalid = await cli.run("submit", "--mem", "lots", "--", "true")
    assert invalid.rc == 1 and "resources.memory" in invalid.err
    no_token = await cli.run("list", user=None)
    assert no_token.rc == 1 and "JOBVISOR_TOKEN" in no_token.err and "token create" in no_token.err
    bad_token = await cli.run("list", "--token", "jv_wrong")
    assert bad_token.rc == 1 and "HTTP 401" in bad_token.err
    unreachable = await cli.run("list", "--url", "http://127.0.0.1:9")
    assert unreachable.rc == 1 and "cannot reach the gateway" in unreachable.err
    bare = await cli.run("list", "--url", cli.environ()["JOBVISOR_URL"].removeprefix("http://"))  # no scheme
    assert bare.rc == 0, bare.err
    assert "not http:// or https://" in (await cli.run("list", "--url", "ftp://x")).err
    no_dashes = await cli.run("submit", "python", "-c", "print(1)")  # the command's own options need --
    assert no_dashes.rc == 2 and "put -- before the command" in no_dashes.err


async def test_wait_follows_events_until_completed(real_cli):
    cli = real_cli
    job_id = (await cli.run("submit", "--code", "demo", "--params", '{"steps": 300, "step_delay": 0.005}')).out.strip()
    result = await cli.run("wait", job_id)
    assert result.rc == 0, result.err
    assert result.out.strip() == "completed (exit code 0)"
    assert "%" in result.err and "running" in result.err  # its progress, as the demo reported it


async def test_wait_follows_progress_messages(cli):
    job_id = (await cli.run("submit", "--", "sleep", "1")).out.strip()
    waiter = cli.start("wait", job_id)
    await cli.wait_for_subscribers(1)
    await asyncio.sleep(1.0)  # the CLI re-reads the job after subscribing; let it see `queued` first
    cli.fake.set_state(job_id, "running", progress=0.25, message="warming up")
    cli.fake.set_state(job_id, "completed", exit_code=0)
    result = await asyncio.wait_for(waiter, 30)
    assert result.rc == 0, result.err
    assert result.out.strip() == "completed (exit code 0)"
    assert "25%" in result.err and "warming up" in result.err


async def test_wait_exits_1_when_the_job_fails(real_cli):
    cli = real_cli
    job_id = (await cli.run("submit", "--", "sh", "-c", "sleep 0.5; exit 2")).out.strip()
    result = await cli.run("wait", "-q", job_id)
    assert result.rc == 1 and result.out.startswith("failed (exit code 2)")
    done = await cli.run("wait", job_id)  # already over: answers at once
    assert done.rc == 1 and done.out.startswith("failed")


async def test_wait_timeout(real_cli):
    cli = real_cli
    job_id = (await cli.run("submit", "--", "sleep", "30")).out.strip()
    result = await cli.run("wait", "--timeout", "1", job_id)
    assert result.rc == 124 and f"{job_id} running" in result.err and "--timeout of 1 s passed" in result.err


async def test_logs_plain_and_follow(cli):
    job_id = (await cli.run("submit", "--", "echo")).out.strip()
    cli.fake.set_state(job_id, "running")
    cli.fake.append_log(job_id, b"one\n")
    plain = await cli.run("logs", job_id)
    assert plain.rc == 0 and plain.out == "one\n"
    follower = cli.start("logs", "-f", job_id)

    async def wait_for_reader() -> None:
        while not cli.fake._changed:  # the follower's long-poll is waiting on the job
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait_for_reader(), 15)
    cli.fake.append_log(job_id, b"two\n")
    cli.fake.set_state(job_id, "completed", exit_code=0)
    result = await asyncio.wait_for(follower, 30)
    assert result.rc == 0 and result.out == "one\ntwo\n"
    assert "completed" in result.err


async def test_files_and_get(real_cli, tmp_path):
    cli = real_cli
    job_id = (await cli.run("submit", "--", "sh", "-c", "mkdir out; yes abcdefg | head -c 7680 > out/result.bin")).out.strip()
    assert (await cli.run("wait", job_id)).rc == 0
    payload = (b"abcdefg\n" * 960)[:7680]
    listed = await cli.run("files", job_id)
    assert listed.rc == 0 and "out/result.bin" in listed.out and str(len(payload)) in listed.out
    target = tmp_path / "copy.bin"
    got = await cli.run("get", job_id, "out/result.bin", "-o", str(target))
    assert got.rc == 0, got.err
    assert target.read_bytes() == payload
    missing = await cli.run("get", job_id, "nope", "-o", str(tmp_path / "x"))
    assert missing.rc == 1 and "HTTP 404" in missing.err and not (tmp_path / "x").exists()


def test_a_web_page_instead_of_a_problem_says_it_is_not_a_gateway():
    page = urllib.error.HTTPError("http://127.0.0.1:8766/api/v1/jobs", 404, "Not Found", None,
                                  io.BytesIO(b"<html><title>404: Not Found</title></html>"))
    err = _error_from(page)
    assert err.http_status == 404 and "answered with a web page, not a jobvisor gateway" in str(err)
    assert "supervisor's port" in str(err)
