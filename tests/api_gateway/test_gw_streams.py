"""Streams: log follow, plain log, file streaming (the events' stream: test_gw_events.py). Against
the real supervisor and agents (`real`), except where a test needs a log to arrive in pieces
on demand (`env`, the fake)."""

from __future__ import annotations

import asyncio

import pytest

from jobvisor.limits import IO_CHUNK_BYTES
from jobvisor.protocol.job_requests import ReadFile

from sse_client import next_event

pytestmark = pytest.mark.integration


async def test_log_follow_streams_until_the_job_ends(env):
    job = await env.submit()
    env.fake.set_state(job["id"], "running")
    env.fake.append_log(job["id"], "héllo\n".encode())
    url = env.api + f"/jobs/{job['id']}/log?follow=1"
    async with env.http.get(url, headers=env.auth("alice")) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        kind, data = await next_event(resp)
        assert kind == "log" and data == {"offset": 0, "next": 7, "text": "héllo\n"}
        env.fake.append_log(job["id"], b"world\n")
        kind, data = await next_event(resp)
        assert data["text"] == "world\n" and data["offset"] == 7
        env.fake.append_log(job["id"], b"bye\n")
        env.fake.set_state(job["id"], "failed", exit_code=3)
        events = []
        while True:
            kind, data = await next_event(resp)
            events.append((kind, data))
            if kind == "end":
                break
        assert "".join(d["text"] for k, d in events if k == "log") == "bye\n"
        assert events[-1] == ("end", {"state": "failed", "exit_code": 3})
        assert await asyncio.wait_for(resp.content.read(), 5) == b""  # the stream closes


async def test_log_follow_resumes_from_offset(real):
    job = await real.submit(params={"argv": ["printf", "0123456789"]})
    await real.wait_state(job["id"], "completed")
    async with real.http.get(real.api + f"/jobs/{job['id']}/log?follow=1&offset=4", headers=real.auth("alice")) as resp:
        assert await next_event(resp) == ("log", {"offset": 4, "next": 10, "text": "456789"})
        assert await next_event(resp) == ("end", {"state": "completed", "exit_code": 0})


async def test_plain_log_reads_everything_from_offset(real):
    job = await real.submit(params={"script": "echo line 1; echo line 2"})
    await real.wait_state(job["id"], "completed")
    status, body, headers = await real.call("GET", f"/jobs/{job['id']}/log")
    assert status == 200 and body == b"line 1\nline 2\n"
    assert headers["Content-Type"].startswith("text/plain") and headers["X-Log-Size"] == "14"
    status, body, _ = await real.call("GET", f"/jobs/{job['id']}/log?offset=7")
    assert body == b"line 2\n"


async def test_file_streams_across_several_chunks(real):
    size = 2 * IO_CHUNK_BYTES + 12345
    script = f"mkdir out; yes abcdefg | head -c {size} > out/data.bin; echo '{{\"a\": 1}}' > small.json"
    job = await real.submit(params={"script": script})
    await real.wait_state(job["id"], "completed")
    before = len(real.requests)
    status, body, headers = await real.call("GET", f"/jobs/{job['id']}/files/out/data.bin")
    assert status == 200 and body == (b"abcdefg\n" * (size // 8 + 1))[:size]
    assert headers["Content-Type"] == "application/octet-stream"
    reads = [r for r in real.requests[before:] if isinstance(r, ReadFile)]
    assert [r.offset for r in reads] == [0, IO_CHUNK_BYTES, 2 * IO_CHUNK_BYTES]
    status, body, headers = await real.call("GET", f"/jobs/{job['id']}/files/small.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json") and body == {"a": 1}
    status, body, _ = await real.call("GET", f"/jobs/{job['id']}/files")
    assert status == 200 and {"out/data.bin", "small.json"} <= {f["path"] for f in body["files"]}
    status, body, _ = await real.call("GET", f"/jobs/{job['id']}/files/nope.txt")
    assert status == 404 and "nope.txt" in body["detail"]


async def test_file_path_may_not_escape(real):
    job = await real.submit()
    status, body, _ = await real.call("GET", f"/jobs/{job['id']}/files/a/%2E%2E/%2E%2E/etc/passwd")
    assert status in (400, 404), body
    assert body["status"] == status


async def test_values_past_what_the_wire_or_a_file_system_takes_are_400(real):
    """Found by schemathesis: each of these was a 500 or went through unchecked."""
    job = await real.submit()
    log = f"/jobs/{job['id']}/log"
    for path, field in (
        (f"{log}?offset={2**63}", "offset"),
        (f"{log}?follow=yes", "follow"),
        ("/jobs?limit=", "limit"),
        (f"/jobs/{job['id']}/files/{'x' * 256}", "path"),
        (f"/jobs/{job['id']}/files/a/{'b/' * 2100}c", "path"),
    ):
        status, body, _ = await real.call("GET", path)
        assert status == 400 and body["field"] == field, (path, body)
    status, body, _ = await real.call("GET", log, headers={"Last-Event-ID": "9" * 30})
    assert status == 400 and body["field"] == "Last-Event-ID"
    status, body, _ = await real.call("GET", log, headers={"Last-Event-ID": "²"})  # not an offset: ignored
    assert status == 200
    status, body, _ = await real.call("POST", f"/jobs/{job['id']}/analysis", data=b" ", headers={"Content-Type": "application/json"})
    assert status == 400 and body["field"] == "body"
