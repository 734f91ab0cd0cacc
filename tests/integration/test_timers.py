"""Timers against a real `jobvisor up` with real workflows: they fire (every, at), skip a firing
while the workflow still runs, belong to the workflow's owner, emit `system` events, and a
firing missed while `up` was down is caught up once at the next start."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from tests.harness import Api, ApiError, JobvisorProcess
from tests.integration.test_orchestrator import add_user, status_of, until

pytestmark = pytest.mark.integration


def document(name: str, seconds: float = 0) -> dict:
    first = {"name": "first", "code": "shell", "params": {"argv": ["sleep", str(seconds)] if seconds else ["true"]}}
    return {"name": name, "jobs": [first, {"name": "second", "code": "shell", "params": {"argv": ["true"]}, "after": ["first"]}]}


def in_seconds(seconds: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)).isoformat()


async def system_events(api: Api) -> list[dict]:
    page = await api.request("GET", "/events?since=0&format=json&limit=1000")
    return [e for e in page["events"] if e["kind"] == "system"]


@pytest.fixture
async def users(server):
    admin, alice, bob = Api(server.url, server.token), add_user(server, "alice"), add_user(server, "bob")
    try:
        yield admin, alice, bob
    finally:
        for api in (admin, alice, bob):
            await api.close()


async def test_a_timer_executes_its_workflow_every_second_and_skips_while_it_runs(server, users):
    admin, alice, bob = users
    quick = await alice.request("POST", "/workflows", json=document("quick"))
    slow = await alice.request("POST", "/workflows", json=document("slow", 30))

    timer = await alice.request("POST", "/timers", json={"workflow_id": quick["id"], "every": 1})
    assert timer["kind"] == "every" and timer["every"] == 1 and timer["owner"] == "alice" and timer["next_at"]
    await until(lambda: _ran(alice, quick["id"], 2), what="two runs of the quick workflow")
    done = await alice.request("GET", f"/workflows/{quick['id']}")
    assert done["state"] in ("running", "completed") and done["run"] >= 2

    blocker = await alice.request("POST", "/timers", json={"workflow_id": slow["id"], "every": "1s"})
    await until(lambda: _outcome(alice, blocker["id"], "skipped"), what="a skipped firing")
    (seen,) = [t for t in (await alice.request("GET", "/timers"))["timers"] if t["id"] == blocker["id"]]
    assert "still running" in seen["last_reason"] and seen["fired"] == 1 and seen["skipped"] >= 1
    assert (await alice.request("GET", f"/workflows/{slow['id']}"))["run"] == 1  # the skips started nothing

    # another user's timer is a 404, like a missing one; admins see and delete everyone's
    assert (await bob.request("GET", "/timers"))["timers"] == []
    assert await status_of(bob.request("DELETE", f"/timers/{timer['id']}")) == 404
    assert await status_of(bob.request("POST", "/timers", json={"workflow_id": quick["id"], "every": 5})) == 404
    assert {t["id"] for t in (await admin.request("GET", "/timers"))["timers"]} == {timer["id"], blocker["id"]}
    assert await alice.request("DELETE", f"/timers/{timer['id']}") == {"id": timer["id"], "deleted": True}
    assert await admin.request("DELETE", f"/timers/{blocker['id']}") == {"id": blocker["id"], "deleted": True}
    assert (await alice.request("GET", "/timers"))["timers"] == []
    runs = (await alice.request("GET", f"/workflows/{quick['id']}"))["run"]
    await asyncio.sleep(2.5)
    assert (await alice.request("GET", f"/workflows/{quick['id']}"))["run"] == runs  # deleted: no more firings

    events = await system_events(alice)
    fired = [e for e in events if e["data"]["action"] == "timer_fired" and e["data"]["timer_id"] == timer["id"]]
    skipped = [e for e in events if e["data"]["action"] == "timer_skipped" and e["data"]["timer_id"] == blocker["id"]]
    assert len(fired) >= 2 and fired[0]["workflow_id"] == quick["id"] and fired[0]["owner"] == "alice"
    assert skipped and skipped[0]["workflow_id"] == slow["id"] and "still running" in skipped[0]["data"]["reason"]
    assert await system_events(bob) == []


async def _ran(api: Api, workflow_id: str, runs: int) -> bool:
    view = await api.request("GET", f"/workflows/{workflow_id}")
    return view["run"] >= runs and (view["run"] > runs or view["state"] == "completed")


async def _outcome(api: Api, timer_id: str, outcome: str) -> bool:
    return any(t["id"] == timer_id and t["last_outcome"] == outcome for t in (await api.request("GET", "/timers"))["timers"])


async def test_an_at_timer_fires_once(server, users):
    _, alice, _ = users
    workflow = await alice.request("POST", "/workflows", json=document("once"))
    timer = await alice.request("POST", "/timers", json={"workflow_id": workflow["id"], "at": in_seconds(1)})
    assert timer["kind"] == "at" and timer["at"] == timer["next_at"]
    await until(lambda: _ran(alice, workflow["id"], 1), what="the run")
    (after,) = (await alice.request("GET", "/timers"))["timers"]
    assert after["last_outcome"] == "executed" and after["fired"] == 1 and after["next_at"] is None
    with pytest.raises(ApiError) as info:
        await alice.request("POST", "/timers", json={"workflow_id": workflow["id"], "at": "2020-01-01T00:00:00Z"})
    assert info.value.status == 400 and info.value.body["field"] == "at"


async def test_a_firing_missed_while_up_was_down_is_caught_up_once(tmp_path):
    server = JobvisorProcess(tmp_path / "state")
    server.start()
    token = server.token
    api = Api(server.url, token)
    try:
        workflow = await api.request("POST", "/workflows", json=document("nightly"))
        timer = await api.request("POST", "/timers", json={"workflow_id": workflow["id"], "every": "3s"})
        server.stop()  # SIGTERM before its first firing
        await asyncio.sleep(7)  # two firings missed
        restarted = time.time()
        server.restart()
        await api.close()
        api = Api(server.url, token)
        await until(lambda: _fired(api, timer["id"], 2), timeout=15, what="the catch-up and the next firing")
        fired = [e["data"] for e in await system_events(api) if e["data"]["action"] == "timer_fired"]
        due = [dt.datetime.fromisoformat(f["scheduled_at"]).timestamp() for f in fired]
        missed = [f for f, at in zip(fired, due) if at < restarted]
        assert len(missed) == 1 and "catch-up" in missed[0]["reason"], fired  # one firing for the two missed
        assert all(at >= restarted for at in due[1:])  # then on its schedule again
    finally:
        await api.close()
        server.cleanup()


async def _fired(api: Api, timer_id: str, count: int) -> bool:
    return any(t["id"] == timer_id and t["fired"] >= count for t in (await api.request("GET", "/timers"))["timers"])
