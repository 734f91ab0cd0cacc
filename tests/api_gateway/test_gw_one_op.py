"""One op per request: the routes about one job make just their own op, and it is that op
(the supervisor's ownership check) that answers another user's request with 404. Against the
real supervisor, with a job running on a real agent that has written a log line and a file."""

from __future__ import annotations

import asyncio

import pytest

from jobvisor.protocol.job_requests import CancelJobRequest, GetJob, ListFiles, ReadFile, ReadLog, RunAnalysis

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"

ROUTES = [
    ("POST", "/cancel", CancelJobRequest),
    ("GET", "/log", ReadLog),
    ("GET", "/log?follow=1", ReadLog),
    ("GET", "/files", ListFiles),
    ("GET", "/files/out.txt", ReadFile),
    ("POST", "/analysis", RunAnalysis),
]
IDS = [path for _, path, _ in ROUTES]


async def _alices_job(real, script: str = "echo line; echo result > out.txt; sleep 30") -> dict:
    job = await real.submit(user="alice", params={"script": script})
    await real.wait_state(job["id"], {"running", "completed"})
    for _ in range(200):  # the script's first lines are written
        status, body, _ = await real.call("GET", f"/jobs/{job['id']}/files")
        if status == 200 and any(f["path"] == "out.txt" for f in body["files"]):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job['id']} wrote no out.txt")


def _ops_since(real, before: int) -> list[type]:
    return [type(r) for r in real.requests[before:]]


@pytest.mark.parametrize("method, path, op", ROUTES, ids=IDS)
async def test_another_users_request_is_one_op_answered_404(real, method, path, op):
    job = await _alices_job(real)
    before = len(real.requests)
    status, body, headers = await real.call(method, f"/jobs/{job['id']}{path}", user="bob")
    assert status == 404 and headers["Content-Type"].startswith(PROBLEM), body  # never a 200 stream
    assert body["status"] == 404 and job["id"] in body["detail"]
    assert _ops_since(real, before) == [op]  # refused by the op itself: no GetJob asked first
    assert (await real.wait_state(job["id"], "running"))["attempt"] == 1  # bob's cancel never reached it


@pytest.mark.parametrize("user", ["alice", "root"])
@pytest.mark.parametrize("method, path, op", [r for r in ROUTES if "follow" not in r[1]], ids=IDS[:2] + IDS[3:])
async def test_owner_and_admin_make_one_op(real, user, method, path, op):
    job = await _alices_job(real)
    before = len(real.requests)
    status, body, _ = await real.call(method, f"/jobs/{job['id']}{path}", user=user)
    assert status == 200, body
    assert _ops_since(real, before) == [op]


async def test_followed_log_of_the_owner_starts_with_its_first_read(real):
    """The ReadLog that checks ownership is also the stream's first slice: nothing read twice."""
    job = await _alices_job(real, "echo line; echo result > out.txt")
    await real.wait_state(job["id"], "completed")
    before = len(real.requests)
    async with real.http.get(real.api + f"/jobs/{job['id']}/log?follow=1", headers=real.auth("alice")) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        text = (await resp.read()).decode()
    assert text.count("event: log") == 1 and '"text":"line\\n"' in text and "event: end" in text
    # one ReadLog (the log was complete), then the GetJob that gives the end event its state
    assert _ops_since(real, before) == [ReadLog, GetJob]
