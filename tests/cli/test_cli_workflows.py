"""`jobvisor workflow ...`, `timer ...` and `queue clear` on workflows: the real CLI in a
subprocess against the real gateway, supervisor (with its workflow engine) and agents."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sys
from typing import AsyncIterator

import pytest

from cli_env import ROOT, CliEnv
from real_env import RealEnv, start_real_env

YAML = """\
name: study
jobs:
  - name: prep
    code: shell
    params: {argv: [sh, -c, "echo prep"]}
  - name: report
    code: shell
    params: {argv: ["true"]}
    after: [prep]
"""


@pytest.fixture
async def env(tmp_path) -> AsyncIterator[tuple[RealEnv, CliEnv]]:
    real = await start_real_env(tmp_path)
    try:
        yield real, CliEnv(gateway=real.gateway, fake=None, state_dir=real.config.state_dir, tokens=real.tokens)
    finally:
        await real.close()


def doc(name: str, *argvs: list[str], chain: bool = True) -> bytes:
    jobs = [{"name": f"j{i}", "code": "shell", "params": {"argv": argv}} for i, argv in enumerate(argvs)]
    for i in range(1, len(jobs)):
        if chain:
            jobs[i]["after"] = [f"j{i - 1}"]
    return json.dumps({"name": name, "jobs": jobs}).encode()


async def test_submit_list_show_history_watch_execute_cancel_delete(env, tmp_path):
    real, cli = env
    path = tmp_path / "study.yaml"
    path.write_text(YAML)
    submitted = await cli.run("workflow", "submit", str(path), "-m", "first try")
    assert submitted.rc == 0, submitted.err
    workflow_id = submitted.out.strip()
    assert "\n" not in workflow_id and submitted.err.strip() == "study version 1: draft"

    listed = await cli.run("workflow", "list")
    assert listed.rc == 0 and listed.out.splitlines()[0].split()[:4] == ["ID", "NAME", "VERSION", "STATE"]
    assert listed.out.splitlines()[1].split()[:4] == [workflow_id, "study", "1", "draft"]
    assert (await cli.run("workflow", "list", user="bob")).out == ""

    (tmp_path / "study.json").write_text(json.dumps({"name": "study", "jobs": [
        {"name": "prep", "code": "shell", "params": {"argv": ["true"]}},
        {"name": "report", "code": "shell", "params": {"argv": ["true"]}, "after": ["prep"]}]}))
    again = await cli.run("workflow", "submit", str(tmp_path / "study.json"), "--execute", "--message", "second")
    assert again.rc == 0 and again.out.strip() == workflow_id and again.err.strip() == "study version 2: running"

    watched = await cli.run("workflow", "status", "study", "--watch", "--interval", "0.2")  # by its name
    assert watched.rc == 0, watched.err
    lines = watched.out.splitlines()
    assert any("report: completed" in line for line in lines), watched.out
    assert lines[-1] == f"workflow {workflow_id} completed: completed 2"

    shown = await cli.run("workflow", "show", workflow_id)
    assert shown.rc == 0
    fields = dict(line.split(None, 1) for line in shown.out.splitlines() if line and not line.startswith(("JOB", "prep", "report")))
    assert fields["state"] == "completed" and fields["version"] == "2" and fields["run"] == "1"
    assert [line.split()[:2] for line in shown.out.splitlines() if line.startswith(("prep", "report"))] == \
        [["prep", "completed"], ["report", "completed"]]
    as_json = json.loads((await cli.run("workflow", "show", workflow_id, "--json")).out)
    assert as_json["document"]["jobs"][0]["name"] == "prep"

    status = json.loads((await cli.run("workflow", "status", workflow_id, "--json")).out)  # the status route
    assert status["state"] == "completed" and status["counts"] == {"completed": 2} and status["started_at"]
    assert sorted(j["name"] for j in status["jobs"]) == ["prep", "report"]

    pushed = await cli.run("events", "push", '{"step": "x"}', "--workflow", "study")  # by its name, as everywhere
    assert pushed.rc == 0, pushed.err
    event = json.loads((await cli.run("events", "--json", "--since", str(int(pushed.out) - 1))).out.splitlines()[0])
    assert event["workflow_id"] == workflow_id and event["data"] == {"step": "x"}
    history = await cli.run("workflow", "history", workflow_id[:12])  # by a prefix of its id
    rows = [line.split(None, 5) for line in history.out.splitlines()[1:]]  # the time is two words
    assert [(r[0], r[3], len(r[4]), r[5]) for r in rows] == [("1", "alice", 12, "first try"), ("2", "alice", 12, "second")]

    slow = (await cli.run("workflow", "submit", "-", stdin=doc("slow", ["sleep", "60"], ["true"]))).out.strip()
    started = await cli.run("workflow", "execute", slow)
    assert started.rc == 0 and started.out.strip() == f"{slow} run 1: running"
    busy = await cli.run("workflow", "execute", slow)
    assert busy.rc == 1 and "HTTP 409" in busy.err
    refused = await cli.run("workflow", "delete", slow)
    assert refused.rc == 1 and "HTTP 409" in refused.err and "force" in refused.err
    canceled = await cli.run("workflow", "cancel", slow)
    assert canceled.rc == 0 and canceled.out.strip() == f"{slow} canceling"  # its running job is stopping
    status = await cli.run("workflow", "status", slow)
    assert status.rc == 0 and status.out.splitlines()[0].startswith("workflow slow") and "canceled" in status.out
    watched = await cli.run("workflow", "status", slow, "--watch")
    assert watched.rc == 1 and watched.out.splitlines()[-1].startswith(f"workflow {slow} canceled")

    await cli.run("workflow", "execute", slow)
    deleted = await cli.run("workflow", "delete", slow, "--force")
    assert deleted.rc == 0 and deleted.out.strip() == f"{slow} deleted"
    gone = await cli.run("workflow", "show", slow)
    assert gone.rc == 1 and "HTTP 404" in gone.err
    assert (await cli.run("workflow", "show", workflow_id, user="bob")).rc == 1
    theirs = await cli.run("workflow", "show", "study", user="bob")  # bob has no workflow of that name
    assert theirs.rc == 2 and "no workflow has the id prefix or name 'study'" in theirs.err
    await cli.run("workflow", "submit", "-", stdin=doc("study", ["true"]), user="bob")
    both = await cli.run("workflow", "show", "study", user="root")  # an admin sees alice's and bob's
    assert both.rc == 2 and "names more than one workflow" in both.err and "owner bob" in both.err


async def test_a_failed_workflow_exits_1_and_bad_documents_name_the_field(env, tmp_path):
    real, cli = env
    failing = (await cli.run("workflow", "submit", "-", "--execute", stdin=doc("fails", ["false"], ["true"]))).out.strip()
    watched = await cli.run("workflow", "status", failing, "--watch", "--interval", "0.2")
    assert watched.rc == 1
    assert watched.out.splitlines()[-1].startswith(f"workflow {failing} failed")

    cycle = json.dumps({"name": "loop", "jobs": [
        {"name": "a", "code": "shell", "params": {"argv": ["true"]}, "after": ["b"]},
        {"name": "b", "code": "shell", "params": {"argv": ["true"]}, "after": ["a"]}]})
    bad = await cli.run("workflow", "submit", "-", stdin=cycle.encode())
    assert bad.rc == 1 and "HTTP 400" in bad.err and "(field: jobs[1].after)" in bad.err and "b -> a -> b" in bad.err and "Traceback" not in bad.err
    missing = await cli.run("workflow", "submit", str(tmp_path / "nope.yaml"))
    assert missing.rc == 1 and "cannot read the workflow document" in missing.err


async def test_timers_and_queue_clear_on_a_workflow(env):
    real, cli = env
    workflow_id = (await cli.run("workflow", "submit", "-", stdin=doc("timed", ["true"]))).out.strip()
    added = await cli.run("timer", "add", "timed", "--every", "1h30m")  # the workflow by its name
    assert added.rc == 0, added.err
    timer_id = added.out.strip()
    listed = await cli.run("timer", "list")
    row = listed.out.splitlines()[1].split()
    assert row[:5] == [timer_id, "timed", "every", "1h", "30m"]  # the workflow's name, the interval for a person
    assert workflow_id not in listed.out
    assert (await cli.run("timer", "list", user="bob")).out.split() == ["ID", "WORKFLOW", "SCHEDULE", "NEXT", "LAST",
                                                                       "LAST", "OUTCOME"]  # a header, even empty
    assert "HTTP 404" in (await cli.run("timer", "rm", timer_id, user="bob")).err
    removed = await cli.run("timer", "rm", timer_id)
    assert removed.rc == 0 and removed.out.strip() == f"{timer_id} deleted"
    assert len((await cli.run("timer", "list")).out.splitlines()) == 1

    chain = (await cli.run("workflow", "submit", "-", "--execute",
                           stdin=doc("chain", ["sleep", "60"], ["true"], ["true"]))).out.strip()
    await _until_running(real, chain)
    cleared = await cli.run("queue", "clear")
    assert cleared.rc == 0 and cleared.out.strip() == "canceled 2 of alice's queued and waiting jobs"
    jobs = json.loads((await cli.run("workflow", "show", chain, "--json")).out)["jobs"]
    assert {j["name"]: j["state"] for j in jobs} == {"j0": "running", "j1": "canceled", "j2": "canceled"}


async def _until_running(real: RealEnv, workflow_id: str) -> None:
    for _ in range(200):
        status, view, _ = await real.call("GET", f"/workflows/{workflow_id}")
        if {j["name"]: j["state"] for j in view["jobs"]}.get("j0") == "running":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the first job of {workflow_id} did not start: {view}")


async def test_watch_redraws_in_place_on_a_terminal(env):
    real, cli = env
    workflow_id = (await cli.run("workflow", "submit", "-", "--execute",
                                 stdin=doc("tty", ["sleep", "1"], ["true"]))).out.strip()
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobvisor.cli.main", "workflow", "status", workflow_id, "--watch", "--interval", "0.2",
        stdout=slave, stderr=asyncio.subprocess.PIPE, env=cli.environ(), cwd=str(ROOT))
    os.close(slave)
    output = bytearray()
    loop = asyncio.get_running_loop()
    while True:
        try:
            chunk = await loop.run_in_executor(None, os.read, master, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    text = output.decode()
    assert "\x1b[" in text and "F\x1b[J" in text  # moved up and cleared: redrawn in place
    assert "workflow tty" in text and "completed" in text
