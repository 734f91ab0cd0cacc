"""`submit --array/--max-retries/--retry-on` and `resubmit` as a user types them, against the
real gateway, supervisor and agents."""

from __future__ import annotations

import asyncio

import pytest

from jobvisor.cli.errors import CliError
from jobvisor.cli.job_extras import parse_param_overrides
from jobvisor.cli.jobs import build_job
from jobvisor.cli.main import build_parser


def test_submit_options_make_the_job_fields():
    args = build_parser().parse_args(["submit", "--array", "1-10%2", "--max-retries", "3", "--retry-on",
                                      "failed,timed_out", "--", "true"])
    job = build_job(args)
    assert job["array"] == "1-10%2" and job["max_retries"] == 3 and job["retry_on"] == ["failed", "timed_out"]
    with pytest.raises(CliError, match="'canceled' is not one of"):
        build_job(build_parser().parse_args(["submit", "--retry-on", "canceled", "--", "true"]))


def test_submit_help_says_what_retries_do(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["submit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ended lost" in text and "timed_out (it ran past --walltime)" in text and "JOBVISOR_ARRAY_INDEX" in text
    assert "%N to run at most N at once" in text


def test_param_overrides_read_json_values():
    assert parse_param_overrides(["args.n=3", "name=x", "flag=true", "list=[1,2]"]) == {
        "args.n": 3, "name": "x", "flag": True, "list": [1, 2]}
    with pytest.raises(CliError, match="expected KEY=VALUE"):
        parse_param_overrides(["oops"])


async def test_submit_an_array_and_resubmit_one_of_its_jobs(real_cli, real):
    cli = real_cli
    submitted = await cli.run("submit", "--array", "0-2", "--name", "arr", "--", "sh", "-c", "echo i=$JOBVISOR_ARRAY_INDEX")
    assert submitted.rc == 0, submitted.err
    array_id = submitted.out.strip()
    assert "\n" not in array_id and f"array {array_id}: 3 jobs (0-2)" in submitted.err
    status, page, _ = await real.call("GET", f"/jobs?array={array_id}", "alice")
    assert status == 200 and sorted(job["array_index"] for job in page["jobs"]) == [0, 1, 2]
    last = next(job for job in page["jobs"] if job["array_index"] == 2)
    await real.wait_state(last["id"], "completed")
    shown = await cli.run("logs", last["id"])
    assert shown.out == "i=2\n"

    again = await cli.run("resubmit", last["id"], "--param", 'argv=["sh", "-c", "echo again"]')
    assert again.rc == 0, again.err
    new_id = again.out.strip()
    job = await real.wait_state(new_id, "completed")
    assert job["name"] == "arr" and "array_id" not in job  # a lone job now
    assert (await cli.run("logs", new_id)).out == "again\n"
    other = await cli.run("resubmit", last["id"], user="bob")
    assert other.rc != 0 and "HTTP 404" in other.err


async def test_each_attempts_log_is_kept_and_logs_attempt_reads_it(real_cli, real):
    script = "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo attempt $n; [ $n -ge 3 ]"
    submitted = await real_cli.run("submit", "--max-retries", "2", "--retry-on", "failed", "--", "sh", "-c", script)
    assert submitted.rc == 0, submitted.err
    job_id = submitted.out.strip()
    job = await real.wait_state(job_id, {"completed", "failed"}, timeout=30)
    assert (job["state"], job["attempt"]) == ("completed", 3), job
    for attempt in (1, 2, 3):
        shown = await real_cli.run("logs", job_id, "--attempt", str(attempt))
        assert (shown.rc, shown.out) == (0, f"attempt {attempt}\n"), shown.err
    assert (await real_cli.run("logs", job_id)).out == "attempt 3\n"
    files = (await real_cli.run("files", job_id)).out
    assert "output.1.log" in files and "output.2.log" in files
    beyond = await real_cli.run("logs", job_id, "--attempt", "4")
    assert beyond.rc == 2 and "attempts 1 to 3" in beyond.err
