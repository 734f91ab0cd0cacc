"""`jobvisor events [--follow] [--since ID] [--json]` and `jobvisor events push`: the real CLI
in a subprocess against the real gateway, supervisor and agents (the follower across a kill -9
of `up`: tests/integration/test_events.py)."""

from __future__ import annotations

import asyncio
import json
import sys

from cli_env import ROOT
from jobvisor.cli.events import format_event, summary

TERMINAL = {"completed", "failed"}


async def _done(real, user: str = "alice") -> dict:
    job = await real.submit(user=user, params={"argv": ["true"]})
    await real.wait_state(job["id"], "completed", user=user)
    return job


async def test_events_prints_the_history_one_line_each_or_as_json(real, real_cli):
    job = await _done(real)
    result = await real_cli.run("events")
    assert result.rc == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 4 and all(f"job {job['id']}" in line for line in lines)
    assert [line.split()[6].rstrip(":") for line in lines] == ["queued", "starting", "running", "completed"]
    assert lines[-1].endswith("completed (exit code 0)") and lines[0].split()[3] == "transition"
    as_json = [json.loads(line) for line in (await real_cli.run("events", "--json")).out.splitlines()]
    assert [e["data"]["state"] for e in as_json] == ["queued", "starting", "running", "completed"]
    later = await real_cli.run("events", "--json", "--since", str(as_json[1]["id"]))
    assert [json.loads(line) for line in later.out.splitlines()] == as_json[2:]
    assert (await real_cli.run("events", user="bob")).out == ""  # alice's are not bob's
    await _done(real, user="bob")  # the newest ids are bob's now: alice's newest are further back
    newest = [json.loads(line) for line in (await real_cli.run("events", "--json", "--last", "2")).out.splitlines()]
    assert newest == as_json[-2:]
    assert (await real_cli.run("events", "--last", "2", "--since", "1")).rc == 2


async def test_push_prints_the_id_and_the_event_is_in_the_history(real, real_cli):
    job = await _done(real)
    pushed = await real_cli.run("events", "push", '{"step": "mesh", "ok": true}', "--job", job["id"])
    assert pushed.rc == 0, pushed.err
    event_id = int(pushed.out.strip())
    shown = [json.loads(line) for line in (await real_cli.run("events", "--json", "--since", str(event_id - 1))).out.splitlines()]
    assert shown == [{**shown[0], "id": event_id, "kind": "user", "job_id": job["id"], "data": {"step": "mesh", "ok": True}}]
    bad = await real_cli.run("events", "push", "[1, 2]")
    assert bad.rc == 2 and "JSON object" in bad.err
    theirs = await real_cli.run("events", "push", "{}", "--job", job["id"], user="bob")
    assert theirs.rc == 1 and "job_id" in theirs.err


async def test_follow_prints_live_events_from_now(real, real_cli):
    await _done(real)  # before the follower: not shown
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobvisor.cli.main", "events", "--follow", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=real_cli.environ(), cwd=str(ROOT))
    try:
        await real_cli.wait_for_subscribers(1)
        job = await _done(real)
        seen = []
        while not seen or seen[-1]["data"].get("state") not in TERMINAL:
            seen.append(json.loads(await asyncio.wait_for(proc.stdout.readline(), 15)))
        assert {e["job_id"] for e in seen} == {job["id"]}
        assert [e["data"]["state"] for e in seen] == ["queued", "starting", "running", "completed"]
    finally:
        proc.terminate()
        await proc.wait()


def test_human_lines_say_what_each_kind_is():
    base = {"id": 7, "at": "2026-12-05T08:30:26.123Z", "owner": "alice", "job_id": None, "workflow_id": None}
    assert summary({**base, "kind": "progress", "data": {"state": "running", "progress": 0.25, "message": "mesh"}}) == "25% mesh"
    assert summary({**base, "kind": "workflow", "data": {"name": "study", "state": "running", "counts": {"queued": 2, "waiting": 1}}}) \
        == "study running (queued 2, waiting 1)"
    assert summary({**base, "kind": "user", "data": {"b": 1, "a": "x"}}) == '{"a":"x","b":1}'
    def transition(**data):
        return summary({**base, "kind": "transition", "data": {"attempt": 1, "exit_code": None, **data}})
    assert transition(state="running", reason="running") == "running"  # each thing said once
    assert transition(state="completed", exit_code=0, reason="exit code 0") == "completed (exit code 0)"
    assert transition(state="failed", exit_code=3, reason="exit code 3", attempt=2) == "failed (exit code 3) (attempt 2)"
    assert transition(state="canceled", reason="canceled by user") == "canceled: canceled by user"
    line = format_event({**base, "kind": "system", "workflow_id": "w1", "data": {"action": "timer_fired"}})
    assert "#7" in line and "system" in line and "workflow w1" in line and "2026-12-05" in line
