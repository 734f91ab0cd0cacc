"""Events against a real `jobvisor up` (SQLite and PostgreSQL): a follower (`jobvisor events
--follow`, a real CLI process) across a `kill -9` of `up` and its restart misses nothing and
repeats nothing; ids go on after the restart; Last-Event-ID resumes; another user's events are
invisible; pushed events; pruning by count in the background, with ids going on after it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp
import pytest

from tests.harness import REPO, Api, JobvisorProcess

pytestmark = pytest.mark.integration

TRUE = {"code": "shell", "params": {"argv": ["true"]}}


def add_user(server: JobvisorProcess, name: str) -> Api:
    out = subprocess.run([sys.executable, "-m", "jobvisor", "user", "add", name, "--state-dir", str(server.state_dir)],
                         capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    return Api(server.url, out.stdout.strip().splitlines()[-1])


async def history(api: Api, since: int = 0) -> list[dict]:
    events: list[dict] = []
    while True:
        page = await api.request("GET", f"/events?format=json&since={since}&limit=1000")
        events += page["events"]
        if page["next"] is None:
            return events
        since = page["next"]


async def run_all(api: Api, jobs: list[dict]) -> list[dict]:
    submitted = await api.submit(jobs)
    return [await api.wait_state(j["id"], {"completed", "failed"}) for j in submitted]


class Follower:
    """`jobvisor events --follow --json --since 0` in a subprocess, its lines collected."""

    def __init__(self, url: str, token: str) -> None:
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("JOBVISOR_")},
                    "JOBVISOR_URL": url, "JOBVISOR_TOKEN": token, "PYTHONPATH": str(REPO)}
        self.events: list[dict] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task | None = None

    async def start(self) -> "Follower":
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobvisor", "events", "--follow", "--json", "--since", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self.env, cwd=str(REPO))
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))

    async def until_id(self, event_id: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.events or self.events[-1]["id"] < event_id:
            if time.monotonic() > deadline:
                raise AssertionError(f"the follower printed up to {self.events[-1]['id'] if self.events else None}, "
                                     f"not {event_id}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


async def test_a_follower_misses_nothing_across_a_kill_9_of_up(server):
    token = server.token
    api = Api(server.url, token)
    follower = await Follower(server.url, token).start()
    try:
        await run_all(api, [TRUE] * 5)
        pushed = await api.request("POST", "/events", json={"data": {"phase": "before the crash"}})
        slow = (await api.submit({"code": "shell", "params": {"argv": ["sleep", "1.5"]}}))
        await api.wait_state(slow["id"], "running")
        await follower.until_id(pushed["id"])
        before = await history(api)
        await api.close()
        server.kill()
        server.restart()
        api = Api(server.url, token)
        await api.wait_state(slow["id"], "completed", timeout=60)  # ran on across the crash
        await run_all(api, [TRUE] * 3)
        last = await api.request("POST", "/events", json={"data": {"phase": "after the restart"}, "job_id": slow["id"]})
        assert last["id"] > before[-1]["id"] and last["job_id"] == slow["id"]
        after = await history(api)
        assert after[:len(before)] == before  # nothing committed was lost
        ids = [e["id"] for e in after]
        assert ids == sorted(set(ids)) and ids[-1] == last["id"]
        await follower.until_id(last["id"])
        assert follower.events == after, "the follower missed or repeated an event"
        slow_states = [e["data"]["state"] for e in after if e["job_id"] == slow["id"] and e["kind"] == "transition"]
        assert slow_states[0] == "queued" and slow_states[-1] == "completed" and slow_states.count("running") == 1
        # a stream resuming from an id before the crash gets exactly what followed it
        mark = before[len(before) // 2]["id"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/api/v1/events", headers={
                    "Authorization": f"Bearer {token}", "Last-Event-ID": str(mark)}) as resp:
                assert resp.status == 200
                resumed = await _read_until(resp, last["id"])
        assert resumed == [e for e in after if e["id"] > mark]
    finally:
        await follower.stop()
        await api.close()


async def _read_until(resp: aiohttp.ClientResponse, event_id: int, timeout: float = 20.0,
                      kinds: tuple | None = ("reconnect", "pruned")) -> list[dict]:
    """The stream's events up to `event_id` (those of `kinds` skipped)."""
    from jobvisor.sse import SseDecoder

    decoder = SseDecoder()
    out: list[dict] = []

    async def read() -> None:
        while True:
            line = await resp.content.readline()
            assert line, "the stream ended"
            event = decoder.feed(line)
            if event is None or (kinds and event[0] in kinds):
                continue
            out.append(event[1])
            if "id" in event[1]:
                assert event[2] == str(event[1]["id"])
                if event[1]["id"] >= event_id:
                    return

    await asyncio.wait_for(read(), timeout)
    return out


async def test_another_users_events_are_invisible_and_pushes_are_checked(server):
    admin = Api(server.url, server.token)
    alice, bob = add_user(server, "alice"), add_user(server, "bob")
    try:
        alices = await run_all(alice, [TRUE])
        bobs = await run_all(bob, [TRUE])
        await bob.request("POST", "/events", json={"data": {"secret": "bob's"}})
        seen_by_alice = await history(alice)
        assert {e["owner"] for e in seen_by_alice} == {"alice"}
        assert {e["job_id"] for e in seen_by_alice} == {alices[0]["id"]}
        assert {e["owner"] for e in await history(admin)} >= {"alice", "bob"}
        page = await alice.request("GET", f"/events?format=json&job={bobs[0]['id']}")
        assert page["events"] == []
        with pytest.raises(Exception) as info:  # bob's job is not alice's to push about
            await alice.request("POST", "/events", json={"data": {}, "job_id": bobs[0]["id"]})
        assert info.value.status == 400 and info.value.body["field"] == "job_id"
    finally:
        for api in (admin, alice, bob):
            await api.close()


async def test_pruning_by_count_runs_in_the_background_and_ids_go_on(tmp_path, database):
    proc = JobvisorProcess(tmp_path / "state", env={
        **database.env, "JOBVISOR_EVENTS_KEEP_COUNT": "10", "JOBVISOR_EVENTS_PRUNE_INTERVAL": "0.2",
    })
    proc.start()
    token = proc.token
    api = Api(proc.url, token)
    try:
        await run_all(api, [TRUE] * 10)  # 40 transitions
        newest = (await api.request("POST", "/events", json={"data": {"n": "newest"}}))["id"]
        deadline = time.monotonic() + 20
        while len(kept := await history(api)) > 10:
            assert time.monotonic() < deadline, f"{len(kept)} events kept, not 10"
            await asyncio.sleep(0.1)
        assert [e["id"] for e in kept] == list(range(newest - 9, newest + 1))
        page = await api.request("GET", "/events?format=json&since=1")
        assert page["pruned"] is True and [e["id"] for e in page["events"]] == [e["id"] for e in kept]
        assert (await api.request("GET", f"/events?format=json&since={newest - 10}"))["pruned"] is False
        async with aiohttp.ClientSession() as http:  # a stream resuming from a pruned id says so first
            async with http.get(f"{proc.url}/api/v1/events?since=1", headers={"Authorization": f"Bearer {token}"}) as resp:
                first = await _read_until(resp, newest, kinds=None)
        assert first[0]["since"] == 1 and "pruned" in first[0]["detail"]
        assert [e["id"] for e in first[1:]] == [e["id"] for e in kept]
        await api.close()
        proc.stop()
        proc.restart()
        api = Api(proc.url, token)
        again = await api.request("POST", "/events", json={"data": {"n": "after restart"}})
        assert again["id"] > newest  # the newest event is kept, so ids go on from it
    finally:
        await api.close()
        proc.cleanup()
