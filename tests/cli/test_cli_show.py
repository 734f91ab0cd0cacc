"""`jobvisor show`: a job's fields and its history for a person to read, times in local time
(as `list` shows them).
The end-to-end test runs the CLI against the real gateway, supervisor and agent."""

from __future__ import annotations

import re
from datetime import timedelta, timezone


from cli_env import cli_environ, run_cli
from jobvisor.cli.jobs import format_history, format_job, local_time

EST = timezone(timedelta(hours=-5))


def test_history_is_one_line_per_transition_in_local_time():
    history = [
        {"attempt": 1, "state": "queued", "reason": "submitted", "at": 1796450462.5},
        {"attempt": 1, "state": "running", "reason": "running", "at": 1796450463.0},
        {"attempt": 2, "state": "queued", "reason": "retrying after: agent lost", "at": 1796450464.25},
    ]
    assert format_history(history, EST) == [
        "  2026-12-05 01:01:02.500-05:00  #1  queued   submitted",
        "  2026-12-05 01:01:03.000-05:00  #1  running  running",
        "  2026-12-05 01:01:04.250-05:00  #2  queued   retrying after: agent lost",
    ]
    shown = format_job({"id": "j1", "state": "queued", "created_at": "2026-12-05T06:01:02.5+00:00",
                        "started_at": None, "history": history}, EST)
    assert "created_at  2026-12-05 01:01:02.500-05:00" in shown.splitlines()
    assert "started_at  -" in shown.splitlines()
    assert shown.splitlines()[-4] == "history" and "1796450462" not in shown


def test_odd_values_are_shown_as_they_are():
    assert local_time("not a time", EST) == "not a time"
    assert local_time("2026-12-05T06:01:02", EST) == "2026-12-05 01:01:02.000-05:00"  # naive: UTC
    assert format_job({"id": "j1", "history": []}, EST).splitlines()[-1] == "history  -"
    assert format_history([{"state": "queued"}], EST) == ["  -  #-  queued"]


async def test_show_of_a_real_job(real, tmp_path):
    job = await real.submit(params={"argv": ["true"]})
    await real.wait_state(job["id"], "completed")
    env = cli_environ(tmp_path / "cli-state", JOBVISOR_URL=real.gateway.url, JOBVISOR_TOKEN=real.tokens["alice"], TZ="EST+5")
    shown = await run_cli("show", job["id"], env=env)
    assert shown.rc == 0, shown.err
    lines = shown.out.splitlines()
    history = lines[lines.index("history") + 1:]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}-05:00"
    assert [line.split()[3] for line in history] == ["queued", "starting", "running", "completed"]
    assert all(re.fullmatch(rf"  {stamp}  #1  \w+ +\S.*", line) for line in history), history
    assert history[-1].endswith("exit code 0")
    assert re.fullmatch(rf"created_at +{stamp}", next(line for line in lines if line.startswith("created_at")))
    listed = await run_cli("list", env=env)
    assert listed.rc == 0 and re.search(rf"{job['id']} .*{stamp}$", listed.out, re.MULTILINE), listed.out
