"""The orchestrator routes against a real `jobvisor up` (local driver, real agents): the queue's
clear, an agent's cancel and shutdown, the admins' cancel-all and shutdown, and who may do
what (403 for non-admins, 404 for another user's agent)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from tests.harness import REPO, Api, ApiError, JobvisorProcess

pytestmark = pytest.mark.integration

SLEEP = {"code": "shell", "params": {"argv": ["sleep", "120"]}}


def add_user(server: JobvisorProcess, name: str) -> Api:
    out = subprocess.run([sys.executable, "-m", "jobvisor", "user", "add", name, "--state-dir", str(server.state_dir)],
                         capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    return Api(server.url, out.stdout.strip().splitlines()[-1])


async def status_of(call) -> int:
    with pytest.raises(ApiError) as info:
        await call
    return info.value.status


async def agents_of(api: Api, user: str) -> list[dict]:
    return [a for a in (await api.request("GET", "/agents"))["agents"] if a["user"] == user]


async def until(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout} s"
        await asyncio.sleep(0.1)


@pytest.fixture
async def one_slot(tmp_path):
    """`up` with one cpu slot and no sending ahead (so queued jobs stay queued), the admin's
    client, and alice's and bob's."""
    server = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_LOCAL_CPUS": "1", "JOBVISOR_SUPERVISOR_PREFETCH": "0"})
    server.start()
    admin, alice, bob = Api(server.url, server.token), add_user(server, "alice"), add_user(server, "bob")
    try:
        yield server, admin, alice, bob
    finally:
        for api in (admin, alice, bob):
            await api.close()
        server.cleanup()


async def test_queue_clear_cancels_the_callers_queue_and_admins_choose_whose(one_slot):
    server, admin, alice, bob = one_slot
    running = await admin.submit(SLEEP)
    await admin.wait_state(running["id"], "running")
    alices = await alice.submit([SLEEP] * 3)
    bobs = await bob.submit([SLEEP] * 2)
    admins = await admin.submit([SLEEP])

    assert await status_of(bob.request("POST", "/queue/clear?user=alice")) == 403
    assert await status_of(alice.request("POST", "/queue/clear?user=")) == 400
    cleared = await alice.request("POST", "/queue/clear")
    assert cleared == {"user": "alice", "canceled": 3}
    for job in alices:
        done = await alice.job(job["id"])
        assert done["state"] == "canceled" and done["reason"] == "canceled by user (queue_clear)"
    assert {(await bob.job(j["id"]))["state"] for j in bobs} == {"queued"}
    assert (await alice.request("POST", "/queue/clear")) == {"user": "alice", "canceled": 0}

    assert (await admin.request("POST", "/queue/clear?user=bob")) == {"user": "bob", "canceled": 2}
    assert (await bob.job(bobs[0]["id"]))["reason"] == "canceled by admin (queue_clear)"
    assert (await admin.job(admins[0]["id"]))["state"] == "queued"
    assert (await admin.request("POST", "/queue/clear")) == {"all_users": True, "canceled": 1}
    assert (await admin.job(running["id"]))["state"] == "running"  # a clear leaves started jobs alone

    page = await alice.request("GET", "/events?since=0&format=json&limit=1000")
    actions = [e["data"] for e in page["events"] if e["kind"] == "system"]
    assert actions == [{"action": "queue_clear", "user": "alice", "canceled": 3},
                       {"action": "queue_clear", "user": "alice", "canceled": 0}]


async def test_agent_cancel_and_shutdown_are_its_owners_or_an_admins(tmp_path):
    server = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_LOCAL_CPUS": "4"})
    server.start()
    admin, alice, bob = Api(server.url, server.token), add_user(server, "alice"), add_user(server, "bob")
    try:
        jobs = await alice.submit([SLEEP, SLEEP])
        for job in jobs:
            await alice.wait_state(job["id"], "running")
        (agent,) = await agents_of(alice, "alice")
        for action in ("cancel", "shutdown"):
            assert await status_of(bob.request("POST", f"/agents/{agent['id']}/{action}")) == 404
            assert await status_of(alice.request("POST", f"/agents/a0000000000000000000/{action}")) == 404
        assert [(await alice.job(j["id"]))["state"] for j in jobs] == ["running", "running"]

        answer = await alice.request("POST", f"/agents/{agent['id']}/cancel")
        assert answer["canceled"] == 2 and answer["agent"]["id"] == agent["id"]
        for job in jobs:
            ended = await alice.wait_state(job["id"], "canceled")
            assert ended["reason"] == "canceled by user (agent_cancel)"
        assert [a["state"] for a in await agents_of(alice, "alice")] == ["connected"]  # a cancel keeps the agent

        third = await alice.submit(SLEEP)
        await alice.wait_state(third["id"], "running")
        answer = await admin.request("POST", f"/agents/{agent['id']}/shutdown")
        assert answer == {**answer, "canceled": 1} and answer["agent"]["state"] == "stopping"
        ended = await alice.wait_state(third["id"], "canceled")
        assert ended["reason"] == "canceled by admin (agent_shutdown)"
        await until(lambda: _gone(alice, agent["id"]), what=f"agent {agent['id']} gone")

        after = await alice.submit({"code": "shell", "params": {"argv": ["true"]}})  # a new agent is acquired
        done = await alice.wait_state(after["id"], "completed")
        assert done["agent_id"] and done["agent_id"] != agent["id"]
    finally:
        for api in (admin, alice, bob):
            await api.close()
        server.cleanup()


async def _gone(api: Api, agent_id: str) -> bool:
    return all(a["id"] != agent_id for a in (await api.request("GET", "/agents"))["agents"])


async def test_cancel_all_is_for_admins_and_cancels_every_users_jobs(one_slot):
    server, admin, alice, bob = one_slot
    running = await alice.submit(SLEEP)
    await alice.wait_state(running["id"], "running")
    queued = await bob.submit([SLEEP, SLEEP])
    assert await status_of(alice.request("POST", "/admin/cancel_all")) == 403
    assert await status_of(bob.request("POST", "/admin/shutdown")) == 403
    assert (await alice.job(running["id"]))["state"] == "running"

    assert await admin.request("POST", "/admin/cancel_all") == {"canceled": 3}
    ended = await alice.wait_state(running["id"], "canceled")
    assert ended["reason"] == "canceled by admin (cancel_all)"
    assert {(await bob.job(j["id"]))["state"] for j in queued} == {"canceled"}
    assert await admin.request("POST", "/admin/cancel_all") == {"canceled": 0}


@pytest.mark.parametrize("in_process", ["true", "false"])
async def test_admin_shutdown_answers_then_stops_up_as_sigterm_does(tmp_path, in_process):
    server = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_SERVER_IN_PROCESS": in_process})
    server.start()
    token = server.token
    admin = Api(server.url, token)
    try:
        job = await admin.submit(SLEEP)
        await admin.wait_state(job["id"], "running")
        async with admin.session.post(admin.url + "/admin/shutdown", headers=admin._headers()) as resp:
            assert resp.status == 202
            assert await resp.json() == {"shutting_down": True}
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
        server.stop()
        assert "jobvisor stopped" in server.output
        assert not server.agent_pids()
        server.restart()  # committed before the exit: the job was queued again, as its next attempt
        await admin.close()
        admin = Api(server.url, token)
        again = await admin.wait_state(job["id"], "running")
        assert again["attempt"] == 2 and again["max_retries"] == 0, again
        assert [(h["attempt"], h["state"], h["reason"]) for h in again["history"] if h["attempt"] == 2][0] == \
            (2, "queued", "interrupted by the supervisor's stop; runs again when it starts"), again["history"]
    finally:
        await admin.close()
        server.cleanup()


async def test_cancel_all_ends_a_running_workflow_with_its_waiting_jobs(one_slot):
    server, admin, alice, bob = one_slot
    document = {"name": "chain", "jobs": [
        {"name": "first", "code": "shell", "params": {"argv": ["sleep", "120"]}},
        {"name": "second", "code": "shell", "params": {"argv": ["true"]}, "after": ["first"]},
        {"name": "third", "code": "shell", "params": {"argv": ["true"]}, "after": ["second"]}]}
    workflow = await alice.request("POST", "/workflows?execute=true", json=document)
    jobs = await until(lambda: _started(alice, workflow["id"]), what="the first job running")
    assert await admin.request("POST", "/admin/cancel_all") == {"canceled": 3}
    view = await until(lambda: _ended(alice, workflow["id"]), what="the workflow's end")
    assert view["state"] in ("canceled", "failed"), view  # ended, not left running (the engine says which)
    assert {j["name"]: j["state"] for j in view["jobs"]} == {"first": "canceled", "second": "canceled", "third": "canceled"}
    assert jobs  # the first job had started


async def _started(api: Api, workflow_id: str) -> list[dict] | None:
    jobs = (await api.request("GET", f"/workflows/{workflow_id}"))["jobs"]
    return jobs if any(j["name"] == "first" and j["state"] == "running" for j in jobs) else None


async def _ended(api: Api, workflow_id: str) -> dict | None:
    view = await api.request("GET", f"/workflows/{workflow_id}")
    return view if view["state"] != "running" else None
