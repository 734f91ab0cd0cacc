"""The driver contract: the same behaviour on every driver (local now; docker and sbatch join
through tests/contract/backends.py). Real processes, real sockets, real backends."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import Api, ApiError

pytestmark = pytest.mark.integration


def job(script: str, **extra) -> dict:
    return {"code": "shell", "params": {"script": script}, **extra}


async def agent_of(api: Api, job_id: str) -> dict:
    current = await api.job(job_id)
    agents = (await api.request("GET", "/agents"))["agents"]
    (agent,) = [a for a in agents if a["id"] == current["agent_id"]]
    return agent


async def test_run(api, backend):
    submitted = await api.submit(job("echo hello from $JOBVISOR_JOB_ID", driver=backend.kind))
    done = await api.wait_state(submitted["id"], {"completed", "failed"}, timeout=60)
    assert done["state"] == "completed" and done["exit_code"] == 0, done["reason"]
    assert (await api.log(submitted["id"])).decode() == f"hello from {submitted['id']}\n"


async def test_cancel(api, backend):
    submitted = await api.submit(job("echo started; sleep 120", driver=backend.kind))
    await api.wait_state(submitted["id"], "running", timeout=60)
    await api.cancel(submitted["id"])
    done = await api.wait_state(submitted["id"], "canceled", timeout=30)
    assert done["reason"] == "canceled by user"


async def test_agent_death_makes_the_job_lost(api, backend):
    submitted = await api.submit(job("sleep 120", driver=backend.kind))
    await api.wait_state(submitted["id"], "running", timeout=60)
    backend.kill_agent(await agent_of(api, submitted["id"]))
    done = await api.wait_state(submitted["id"], "lost", timeout=30)
    assert "agent" in done["reason"]


async def test_agent_death_with_retries_runs_a_new_attempt(api, backend):
    marker = "first-attempt-done"
    submitted = await api.submit(job(
        f'if [ "$JOBVISOR_ATTEMPT" = 1 ]; then sleep 120; else echo {marker}; fi',
        driver=backend.kind, max_retries=1,
    ))
    await api.wait_state(submitted["id"], "running", timeout=60)
    backend.kill_agent(await agent_of(api, submitted["id"]))
    done = await api.wait_state(submitted["id"], {"completed", "failed", "lost"}, timeout=60)
    assert done["state"] == "completed" and done["attempt"] == 2, done
    states = [(h["attempt"], h["state"]) for h in done["history"]]
    assert (1, "lost") in states and (2, "completed") in states
    assert marker.encode() in await api.log(submitted["id"])


async def test_supervisor_killed_and_restarted_mid_run(server, api, backend):
    submitted = await api.submit(job("echo before; sleep 4; echo after", driver=backend.kind))
    await api.wait_state(submitted["id"], "running", timeout=60)
    await asyncio.sleep(0.5)
    server.kill()
    await asyncio.sleep(1)
    server.restart()
    done = await api.wait_state(submitted["id"], {"completed", "failed", "lost"}, timeout=60)
    assert done["state"] == "completed", done
    assert await api.log(submitted["id"]) == b"before\nafter\n"


async def test_users_are_isolated(server, api, backend):
    import subprocess
    import sys

    from tests.harness import REPO

    out = subprocess.run([sys.executable, "-m", "jobvisor", "user", "add", "carol", "--state-dir", str(server.state_dir)],
                         capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    carol = Api(server.url, out.stdout.strip().splitlines()[-1])
    try:
        mine = await api.submit(job("echo admin-data > f.txt", driver=backend.kind))
        theirs = await carol.submit(job("echo carol-data > f.txt", driver=backend.kind))
        await api.wait_state(mine["id"], "completed", timeout=60)
        await carol.wait_state(theirs["id"], "completed", timeout=60)
        with pytest.raises(ApiError) as info:
            await carol.request("GET", f"/jobs/{mine['id']}/files/f.txt")
        assert info.value.status == 404
        assert await carol.request("GET", f"/jobs/{theirs['id']}/files/f.txt") == b"carol-data\n"
        agents = (await carol.request("GET", "/agents"))["agents"]
        assert agents and all(a["user"] == "carol" for a in agents)
    finally:
        await carol.close()


async def test_sigterm_stops_running_jobs_and_the_restart_runs_them_again(server, api, backend):
    """A planned stop of `up` stops the agents and their jobs, and queues each job it
    interrupted again as its next attempt (max_retries 0 notwithstanding), which runs when `up`
    starts again."""
    submitted = await api.submit(job('echo "attempt $JOBVISOR_ATTEMPT"; [ "$JOBVISOR_ATTEMPT" != 1 ] || sleep 120',
                                     driver=backend.kind))
    await api.wait_state(submitted["id"], "running", timeout=60)
    assert server.stop() == 0
    assert not server.agent_pids()
    server.restart()
    done = await api.wait_state(submitted["id"], {"completed", "failed", "canceled", "lost"}, timeout=120)
    assert (done["state"], done["attempt"], done["max_retries"]) == ("completed", 2, 0), done
    history = [(h["attempt"], h["state"]) for h in done["history"]]
    assert history[:3] == [(1, "queued"), (1, "starting"), (1, "running")] and history[-1] == (2, "completed"), history
    assert done["history"][3]["reason"] == "interrupted by the supervisor's stop; runs again when it starts"
    assert (await api.log(submitted["id"])).decode() == "attempt 2\n"
