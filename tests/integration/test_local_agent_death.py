"""The local driver stops the jobs of an agent that died, and gives its agents the settings
of `up`: real processes, and `jobvisor up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.leftovers import stop_leftovers
from tests.harness import Api, JobvisorProcess

pytestmark = pytest.mark.integration


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
                members.append(int(entry.name))
    return members


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def test_leftovers_are_found_by_their_agent_id_and_only_they_are_stopped():
    env = {**os.environ, "JOBVISOR_AGENT_ID": "a-dead"}
    # a job: the leader of its own group, with a child that cleared its environment
    job = subprocess.Popen(["sh", "-c", "env -i sleep 300 & exec sleep 300"], env=env, start_new_session=True)
    other = subprocess.Popen(["sleep", "300"], env={**os.environ, "JOBVISOR_AGENT_ID": "a-dead-but-longer"},
                             start_new_session=True)
    unmarked = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(group_members(job.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        (child,) = [pid for pid in group_members(job.pid) if pid != job.pid]
        assert stop_leftovers("a-dead") == [job.pid]
        assert job.wait(10) == -signal.SIGKILL
        assert gone(child), "the job's child that cleared its environment is still running"
        assert other.poll() is None and unmarked.poll() is None
        assert stop_leftovers("a-dead") == []
    finally:
        for proc in (job, other, unmarked):
            proc.kill()
            proc.wait()


async def test_an_agent_killed_with_sigkill_leaves_no_job_running(server, api: Api):
    submitted = await api.submit({"code": "shell", "max_retries": 1, "params": {
        "script": 'if [ "$JOBVISOR_ATTEMPT" = 1 ]; then sleep 300 & sleep 300; else echo second; fi'}})
    running = await api.wait_state(submitted["id"], "running")
    pgid = running["info"]["pid"]
    deadline = time.monotonic() + 10
    while len(group_members(pgid)) < 3 and time.monotonic() < deadline:  # sh and its two sleeps
        time.sleep(0.02)
    assert len(group_members(pgid)) == 3
    (agent,) = (await api.request("GET", "/agents"))["agents"]
    os.kill(agent["pid"], signal.SIGKILL)
    done = await api.wait_state(submitted["id"], {"completed", "failed"}, timeout=60)
    assert done["state"] == "completed" and done["attempt"] == 2, done
    assert group_members(pgid) == [], "the first attempt is still running"
    history = [(h["attempt"], h["state"]) for h in done["history"]]
    assert history.index((1, "lost")) < history.index((2, "starting"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


async def test_agents_get_the_settings_of_ups_config_file(tmp_path):
    """`up --config FILE`: the agents it starts run with the file's [agent] and [logging]
    settings, though nothing names the file in their environment."""
    config = tmp_path / "site.toml"
    config.write_text('[logging]\nlevel = "DEBUG"\n')
    server = JobvisorProcess(tmp_path / "state", args=["--config", str(config)])
    server.env.pop("JOBVISOR_CONFIG", None)
    server.start()
    api = Api(server.url, server.token)
    try:
        submitted = await api.submit({"code": "shell", "params": {"argv": ["true"]}})
        done = await api.wait_state(submitted["id"], "completed")
        (agent_log,) = (server.state_dir / "agents").glob(f"{done['agent_id']}.log")
        deadline = time.monotonic() + 10
        while f"job {done['id']} attempt 1: completed" not in agent_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"job {done['id']} attempt 1: completed" in agent_log.read_text()  # logged at DEBUG only
    finally:
        await api.close()
        server.cleanup()
