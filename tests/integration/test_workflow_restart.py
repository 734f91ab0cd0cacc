"""A workflow survives `kill -9` of `up`: a real process killed twice in the middle of a
workflow and restarted on the same state dir; the workflow goes on to its end, every job ran
exactly once, none was released twice, none was left waiting behind a completed dependency."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

from tests.harness import Api
from tests.integration.workflow_api import by_name, publish, shell, wait_workflow

pytestmark = pytest.mark.integration


async def _wait_counts(api: Api, workflow_id: str, at_least_completed: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await api.request("GET", f"/workflows/{workflow_id}/status")
        if status["counts"].get("completed", 0) >= at_least_completed:
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


async def test_kill_9_mid_workflow_then_restart_finishes_it_once(server, tmp_path):
    ran = tmp_path / "ran"

    def job(name: str, after: list[str], pause: float = 0.3) -> dict:
        return shell(name, f"sleep {pause}; echo {name} >> {ran}", after=after)

    jobs = [job("c0", [])]
    jobs += [job(f"c{k}", [f"c{k - 1}"]) for k in range(1, 6)]
    jobs += [job(f"f{k}", ["c2"], pause=0.5) for k in range(8)]
    jobs += [job("join", [f"f{k}" for k in range(8)] + ["c5"])]
    token = server.token
    api = Api(server.url, token)
    try:
        wf = await publish(api, {"name": "survivor", "jobs": jobs})
        for completed in (2, 8):  # once early in the chain, once in the fan
            status = await _wait_counts(api, wf["id"], completed)
            assert status["state"] == "running" and status["counts"].get("waiting", 0) > 0, status["counts"]
            await api.close()
            server.kill()
            server.restart()
            api = Api(server.url, token)
        done = await wait_workflow(api, wf["id"], timeout=120)
        assert done["state"] == "completed", (done["reason"], [(j["name"], j["state"], j["reason"]) for j in done["jobs"]])
        assert done["counts"] == {"completed": len(jobs)}
        counted = collections.Counter(ran.read_text().split())
        assert counted == {j["name"]: 1 for j in jobs}, "a job ran twice or never"
        views = by_name(done)
        for name, view in views.items():
            history = (await api.job(view["job_id"]))["history"]
            states = [h["state"] for h in history]
            assert states.count("running") == 1, (name, history)
            releases = [h for h in history if h["state"] == "queued" and h["reason"] == "dependencies completed"]
            assert len(releases) == (0 if name == "c0" else 1), (name, history)
            assert states[-1] == "completed"
        for k in range(8):  # released after its dependency's end, never before
            assert views[f"f{k}"]["started_at"] >= views["c2"]["finished_at"]
        assert views["join"]["started_at"] >= max(views[f"f{k}"]["finished_at"] for k in range(8))
    finally:
        await api.close()


async def test_a_planned_restart_runs_the_interrupted_jobs_again_and_goes_on(server, tmp_path):
    """SIGTERM stops `up` cleanly: its agents stop the running jobs, which are queued again as
    their next attempt, as any job's are, not failures of their workflow: after the restart
    each runs again, and what waits on it is released when it completes."""
    ran = tmp_path / "ran"
    token = server.token
    api = Api(server.url, token)
    try:
        wf = await publish(api, {"name": "planned", "jobs": [
            shell("quick", f"echo quick >> {ran}"),
            shell("slow", f"echo slow-start >> {ran}; sleep 2; echo slow >> {ran}", after=["quick"]),
            shell("last", f"echo last >> {ran}", after=["slow"]),
        ]})
        deadline = time.monotonic() + 60
        while "slow-start" not in (ran.read_text() if ran.exists() else ""):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await api.close()
        assert server.stop() == 0
        server.restart()
        api = Api(server.url, token)
        done = await wait_workflow(api, wf["id"], timeout=60)
        assert done["state"] == "completed", (done["reason"], [(j["name"], j["state"], j["reason"]) for j in done["jobs"]])
        assert ran.read_text().split() == ["quick", "slow-start", "slow-start", "slow", "last"]
        slow = await api.job(by_name(done)["slow"]["job_id"])
        assert slow["attempt"] == 2
        states = [(h["attempt"], h["state"]) for h in slow["history"]]
        assert (1, "running") in states and states[-1] == (2, "completed"), slow["history"]
        assert "canceled" not in {state for _, state in states}, slow["history"]
        again = next(h for h in slow["history"] if h["attempt"] == 2 and h["state"] == "queued")
        assert again["reason"] == "interrupted by the supervisor's stop; runs again when it starts"
        assert done["counts"] == {"completed": 3}, done["counts"]
    finally:
        await api.close()


async def test_a_workflow_whose_jobs_are_all_canceled_from_outside_ends_canceled(server):
    api = Api(server.url, server.token)
    try:
        wf = await publish(api, {"name": "cleared", "jobs": [
            shell("a", "sleep 30"), shell("b", "true", after=["a"]), shell("c", "true", after=["b"]),
        ]})
        deadline = time.monotonic() + 30
        while (status := await api.request("GET", f"/workflows/{wf['id']}/status"))["counts"].get("running", 0) == 0:
            assert time.monotonic() < deadline, (status["counts"], status["jobs"])
            await asyncio.sleep(0.05)
        await api.request("POST", "/queue/clear")  # b and c: waiting
        a = by_name(await api.request("GET", f"/workflows/{wf['id']}"))["a"]
        await api.request("POST", f"/jobs/{a['job_id']}/cancel")
        done = await wait_workflow(api, wf["id"], timeout=30)
        assert done["state"] == "canceled", done["reason"]
        assert "were canceled" in done["reason"]
    finally:
        await api.close()
