"""GET /events (SSE with ids, resuming from an id without a gap, JSON pages) and POST /events.

Against the real supervisor and agents over HTTP (`real`), except where a test needs the
gateway's link to the supervisor's events to drop, or a burst to overflow a client, on demand
(`env`, the fake, which numbers and keeps its events with the store's own code)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from jobvisor.protocol.events import EventKind
from jobvisor.limits import MAX_USER_EVENT_BYTES

from api_gateway import events as hub_module
from api_gateway.context import HUB, SUPERVISOR
from supervisor.event_log import Emitted

from sse_client import next_event, read_events

pytestmark = pytest.mark.integration

TERMINAL = ("completed", "failed", "canceled", "timed_out", "lost")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def _wait_for_subscribers(env, count: int) -> None:
    async def poll():
        while env.gateway.app[HUB].subscriber_count < count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 5)


def _ended(job_ids: set[str]):
    """An `until` for read_events: true once every job of `job_ids` has a terminal transition."""
    left = set(job_ids)

    def until(kind, data) -> bool:
        if kind == "transition" and data["data"]["state"] in TERMINAL:
            left.discard(data["job_id"])
        return not left

    return until


async def test_events_are_filtered_by_owner_and_admins_see_all(real):
    url = real.api + "/events"
    async with real.http.get(url, headers=real.auth("alice")) as alice, \
            real.http.get(url, headers=real.auth("root")) as root:
        assert alice.status == 200 and alice.headers["Content-Type"].startswith("text/event-stream")
        await _wait_for_subscribers(real, 2)
        bob_job = await real.submit(user="bob", params={"argv": ["true"]})
        await real.wait_state(bob_job["id"], "completed", user="bob")
        alice_job = await real.submit(user="alice", params={"argv": ["true"]})
        seen_by_alice = await read_events(alice, _ended({alice_job["id"]}))
        assert {d["job_id"] for _, d, _ in seen_by_alice} == {alice_job["id"]}  # bob's events never came
        assert {d["owner"] for _, d, _ in seen_by_alice} == {"alice"}
        kind, last, event_id = seen_by_alice[-1]
        assert kind == "transition" and last["kind"] == "transition" and event_id == str(last["id"])
        assert last["data"] == {"state": "completed", "attempt": 1, "reason": "exit code 0", "exit_code": 0}
        assert ISO_UTC.match(last["at"]) and last["workflow_id"] is None
        assert [d["data"]["state"] for _, d, _ in seen_by_alice] == ["queued", "starting", "running", "completed"]
        seen_by_root = await read_events(root, _ended({alice_job["id"], bob_job["id"]}))
        assert [d["job_id"] for _, d, _ in seen_by_root if d["data"]["state"] == "completed"] == [bob_job["id"], alice_job["id"]]
        ids = [d["id"] for _, d, _ in seen_by_root]
        assert ids == sorted(set(ids))


async def test_events_for_one_job(real):
    other = await real.submit(params={"argv": ["sleep", "0.3"]})
    one = await real.submit(params={"argv": ["sleep", "0.3"]})
    async with real.http.get(real.api + f"/events?job={one['id']}", headers=real.auth("alice")) as resp:
        await _wait_for_subscribers(real, 1)
        events = await read_events(resp, _ended({one["id"]}))
    assert {d["job_id"] for _, d, _ in events} == {one["id"]} and other["id"] != one["id"]


async def test_event_stream_needs_a_token(real):
    status, body, _ = await real.call("GET", "/events", user=None)
    assert status == 401 and body["status"] == 401


async def test_a_stream_resumes_from_its_last_id_without_a_gap_or_a_duplicate(real):
    """Read part of the events, drop the connection, let more happen, come back with
    Last-Event-ID: together the two reads are every event of the history, once, in order."""
    first = await real.submit(params={"argv": ["true"]})
    async with real.http.get(real.api + "/events?since=0", headers=real.auth("alice")) as resp:
        before = await read_events(resp, _ended({first["id"]}))
    last_id = before[-1][2]
    more = [await real.submit(params={"argv": ["true"]}) for _ in range(3)]
    for job in more:
        await real.wait_state(job["id"], "completed")
    later = await real.submit(params={"argv": ["sleep", "0.5"]})  # its end comes live, after the history
    async with real.http.get(real.api + "/events", headers={**real.auth("alice"), "Last-Event-ID": last_id}) as resp:
        after = await read_events(resp, _ended({j["id"] for j in more} | {later["id"]}))
    seen = [d["id"] for _, d, _ in before + after]
    assert seen == sorted(set(seen)), "an event came twice or out of order"
    status, page, _ = await real.call("GET", "/events?format=json&since=0&limit=1000")
    assert status == 200 and [e["id"] for e in page["events"]] == seen  # nothing was missed
    assert {d["job_id"] for _, d, _ in after} == {j["id"] for j in more} | {later["id"]}


async def test_history_as_json_pages(real):
    jobs = [await real.submit(params={"argv": ["true"]}) for _ in range(2)]
    for job in jobs:
        await real.wait_state(job["id"], "completed")
    status, page, _ = await real.call("GET", "/events?format=json&since=0&limit=3")
    assert status == 200 and len(page["events"]) == 3 and page["next"] == page["events"][-1]["id"]
    seen = list(page["events"])
    while page["next"] is not None:
        status, page, _ = await real.call("GET", f"/events?format=json&since={page['next']}&limit=3")
        seen += page["events"]
    for job in jobs:
        states = [e["data"]["state"] for e in seen if e["kind"] == "transition" and e["job_id"] == job["id"]]
        assert states == ["queued", "starting", "running", "completed"]
    assert [e["id"] for e in seen] == sorted({e["id"] for e in seen})
    assert all(e["owner"] == "alice" and ISO_UTC.match(e["at"]) for e in seen)
    status, page, _ = await real.call("GET", f"/events?format=json&job={jobs[1]['id']}")
    assert status == 200 and {e["job_id"] for e in page["events"]} == {jobs[1]["id"]} and page["next"] is None
    status, page, _ = await real.call("GET", "/events?format=json&since=0", user="bob")
    assert status == 200 and page["events"] == [] and page["next"] is None  # alice's events are not bob's
    assert page["last_id"] == seen[-1]["id"]  # where a stream that starts now takes over


async def test_post_event_is_committed_and_streamed(real):
    job = await real.submit(params={"argv": ["true"]})
    async with real.http.get(real.api + "/events", headers=real.auth("alice")) as alice, \
            real.http.get(real.api + "/events", headers=real.auth("bob")) as bob:
        await _wait_for_subscribers(real, 2)
        status, event, _ = await real.call("POST", "/events", json={"data": {"step": "mesh", "ok": True}, "job_id": job["id"]})
        assert status == 201 and event["kind"] == "user" and event["data"] == {"step": "mesh", "ok": True}
        assert event["job_id"] == job["id"] and event["owner"] == "alice" and ISO_UTC.match(event["at"])
        streamed = await read_events(alice, lambda kind, data: kind == "user")
        assert streamed[-1] == ("user", event, str(event["id"]))
        status, mine, _ = await real.call("POST", "/events", user="bob", json={"data": {"n": 1}})
        assert status == 201 and mine["id"] > event["id"]
        kind, data = await next_event(bob)
        assert (kind, data) == ("user", mine)  # bob's stream carries his own event only
    status, page, _ = await real.call("GET", f"/events?format=json&since={event['id'] - 1}&limit=1")
    assert page["events"] == [event]


@pytest.mark.parametrize("body, field", [
    ({"data": [1]}, "data"),
    ({}, "data"),
    ({"data": {}, "job_id": 3}, "job_id"),
    ({"data": {}, "extra": 1}, "extra"),
    ({"data": {"x": "y" * MAX_USER_EVENT_BYTES}}, "data"),
    ({"data": {}, "job_id": "j01nosuchjob"}, "job_id"),
    ({"data": {}, "workflow_id": "w01nosuchworkflow"}, "workflow_id"),
    ([], "body"),
])
async def test_post_event_refuses_bad_input_naming_the_field(real, body, field):
    status, problem, _ = await real.call("POST", "/events", json=body)
    assert status == 400 and problem["field"] == field, problem


async def test_post_event_about_another_users_job_is_refused(real):
    job = await real.submit(user="bob", params={"argv": ["true"]})
    status, problem, _ = await real.call("POST", "/events", json={"data": {}, "job_id": job["id"]})
    assert status == 400 and problem["field"] == "job_id"


@pytest.mark.parametrize("query, headers, field", [
    ("?since=-1", {}, "since"),
    ("?since=x", {}, "since"),
    ("?format=xml", {}, "format"),
    ("?limit=5", {}, "limit"),
    ("?format=json&limit=0", {}, "limit"),
    ("", {"Last-Event-ID": "abc"}, "Last-Event-ID"),
    ("", {"Last-Event-ID": "9" * 30}, "Last-Event-ID"),
])
async def test_get_events_refuses_bad_input_naming_the_field(real, query, headers, field):
    status, problem, _ = await real.call("GET", "/events" + query, headers=headers)
    assert status == 400 and problem["field"] == field, problem


async def test_a_slow_client_is_told_where_to_resume_and_loses_nothing(env, monkeypatch):
    """A burst beyond a client's queue ends its stream with `reconnect` and the last id it was
    sent; reconnecting from that id yields the rest, each event once."""
    monkeypatch.setattr(hub_module, "QUEUE_LIMIT", 5)
    hub = env.gateway.app[HUB]
    async with env.http.get(env.api + "/events", headers=env.auth("alice")) as resp:
        await _wait_for_subscribers(env, 1)
        for n in range(30):  # in one turn of the loop: the stream cannot drain in between
            event, = env.fake._record([Emitted(EventKind.USER, "alice", {"n": n}, None, None)])
            hub.publish(event)  # as if the supervisor's link delivered the burst at once
        got = await read_events(resp)  # to the end of the stream
    assert got[-1][0] == "reconnect" and got[-1][1]["reason"] == "overflow"
    resume = got[-1][1]["last_id"]
    sent = [d["data"]["n"] for kind, d, _ in got if kind == "user"]
    assert sent == list(range(len(sent))) and 0 < len(sent) < 30
    assert resume == got[-2][1]["id"]
    async with env.http.get(env.api + "/events", headers={**env.auth("alice"), "Last-Event-ID": str(resume)}) as resp:
        rest = await read_events(resp, lambda kind, data: kind == "user" and data["data"]["n"] == 29)
    assert sent + [d["data"]["n"] for _, d, _ in rest] == list(range(30))


async def test_streams_resume_after_the_gateways_link_to_the_supervisor_comes_back(env):
    """Events committed while the gateway's link to the supervisor was down never reach the
    hub: every open stream is told to reconnect, and its client gets them from the history."""
    job = await env.submit()
    client = env.gateway.app[SUPERVISOR]
    async with env.http.get(env.api + "/events?since=0", headers=env.auth("alice")) as resp:
        first = await read_events(resp, lambda kind, data: kind == "transition")
        assert env.fake.event_connections == 1
        env.fake.drop_event_streams()
        env.fake.set_state(job["id"], "running")  # committed while the gateway had no link

        async def resubscribed() -> None:
            while env.fake.event_connections < 2 or not client.events_connected.is_set():
                await asyncio.sleep(0.02)

        await asyncio.wait_for(resubscribed(), 10)
        ended = await read_events(resp)
    assert ended[-1][0] == "reconnect" and ended[-1][1]["reason"] == "relinked"
    last = ended[-1][1]["last_id"]
    assert last == first[-1][1]["id"]
    async with env.http.get(env.api + "/events", headers={**env.auth("alice"), "Last-Event-ID": str(last)}) as resp:
        missed = await read_events(resp, lambda kind, data: kind == "transition" and data["data"]["state"] == "running")
    assert [d["data"]["state"] for _, d, _ in missed] == ["starting", "running"]
    assert all(d["id"] > last for _, d, _ in missed)


async def test_post_event_answers_what_the_fake_answers(env):
    """The fake speaks PushEvent and ListEvents as the supervisor does (test_fake_contract
    compares their keys); here, the gateway's 201 and page around it."""
    status, event, _ = await env.call("POST", "/events", json={"data": {"a": 1}})
    assert status == 201 and event["data"] == {"a": 1}
    status, page, _ = await env.call("GET", "/events?format=json")
    assert status == 200 and page["events"][-1] == event


async def test_shutdown_ends_open_streams_with_where_to_resume(tmp_path):
    from gateway_env import start_env

    gateway, fake, _, tokens = await start_env(tmp_path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            async with http.get(gateway.url + "/api/v1/events", headers={"Authorization": f"Bearer {tokens['alice']}"}) as resp:
                assert resp.status == 200
                await asyncio.wait_for(gateway.close(), 8)
                rest = await asyncio.wait_for(resp.content.read(), 5)
                assert rest.rstrip().endswith(b"}") and b"event: reconnect" in rest
    finally:
        await fake.close()


async def test_post_event_about_a_workflow_must_be_the_callers(real):
    status, workflow, _ = await real.call("POST", "/workflows", json={
        "name": "study", "jobs": [{"name": "a", "code": "shell", "params": {"argv": ["true"]}}]})
    assert status == 201, workflow
    status, event, _ = await real.call("POST", "/events", json={"data": {"note": "v1"}, "workflow_id": workflow["id"]})
    assert status == 201 and event["workflow_id"] == workflow["id"] and event["job_id"] is None
    status, problem, _ = await real.call("POST", "/events", user="bob", json={"data": {}, "workflow_id": workflow["id"]})
    assert status == 400 and problem["field"] == "workflow_id"


async def test_a_jobs_progress_reports_are_progress_events_before_its_end(real):
    script = ('for i in 1 2 3 4; do printf \'{"fraction": 0.%d, "message": "step %d", "at": 0}\' "$i" "$i" '
              '> "$JOBVISOR_PROGRESS_FILE.tmp" && mv "$JOBVISOR_PROGRESS_FILE.tmp" "$JOBVISOR_PROGRESS_FILE"; sleep 0.3; done')
    job = await real.submit(params={"script": script})
    await real.wait_state(job["id"], "completed")
    status, page, _ = await real.call("GET", f"/events?format=json&job={job['id']}")
    kinds = [(e["kind"], e["data"]["state"]) for e in page["events"]]
    progress = [e["data"] for e in page["events"] if e["kind"] == "progress"]
    assert progress and all(p["state"] == "running" and p["attempt"] == 1 for p in progress)
    fractions = [p["progress"] for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 0.4 and progress[-1]["message"] == "step 4"
    assert kinds.index(("progress", "running")) > kinds.index(("transition", "running"))
    assert kinds[-1] == ("transition", "completed")


async def test_a_history_page_that_cannot_be_read_ends_the_stream_with_where_to_resume(env, monkeypatch):
    from api_gateway import routes_events

    monkeypatch.setattr(routes_events, "HISTORY_PAGE", 2)
    for n in range(5):
        env.fake._record([Emitted(EventKind.USER, "alice", {"n": n}, None, None)])
    env.fake.events_unreadable_after = 2  # the first page (ids 1, 2) reads, the next does not
    async with env.http.get(env.api + "/events?since=0", headers=env.auth("alice")) as resp:
        got = await read_events(resp)
    assert [d["id"] for kind, d, _ in got if kind == "user"] == [1, 2]
    assert got[-1][0] == "reconnect" and got[-1][1]["reason"] == "unavailable" and got[-1][1]["last_id"] == 2
    env.fake.events_unreadable_after = None
    async with env.http.get(env.api + "/events", headers={**env.auth("alice"), "Last-Event-ID": "2"}) as resp:
        rest = await read_events(resp, lambda kind, data: kind == "user" and data["id"] == 5)
    assert [d["id"] for _, d, _ in rest] == [3, 4, 5]
