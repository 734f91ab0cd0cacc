"""One op per request: the routes about one job make just their own op, and it is that op
(the supervisor's ownership check, which the fake enforces the same way) that answers another
user's request with 404."""

from __future__ import annotations

import pytest

from jobvisor.protocol import CancelJobRequest, GetJob, ListFiles, ReadFile, ReadLog, RunAnalysis

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


async def _alices_job(env) -> dict:
    job = await env.submit(user="alice")
    env.fake.files[job["id"]]["out.txt"] = b"result\n"
    env.fake.append_log(job["id"], b"line\n")
    return job


def _ops_since(env, before: int) -> list[type]:
    return [type(r) for r in env.fake.requests[before:]]


@pytest.mark.parametrize("method, path, op", ROUTES, ids=IDS)
async def test_another_users_request_is_one_op_answered_404(env, method, path, op):
    job = await _alices_job(env)
    before = len(env.fake.requests)
    status, body, headers = await env.call(method, f"/jobs/{job['id']}{path}", user="bob")
    assert status == 404 and headers["Content-Type"].startswith(PROBLEM), body  # never a 200 stream
    assert body["status"] == 404 and job["id"] in body["detail"]
    assert _ops_since(env, before) == [op]  # refused by the op itself: no GetJob asked first
    assert env.fake.job(job["id"])["state"] == "queued"


@pytest.mark.parametrize("user", ["alice", "root"])
@pytest.mark.parametrize("method, path, op", [r for r in ROUTES if "follow" not in r[1]], ids=IDS[:2] + IDS[3:])
async def test_owner_and_admin_make_one_op(env, user, method, path, op):
    job = await _alices_job(env)
    before = len(env.fake.requests)
    status, body, _ = await env.call(method, f"/jobs/{job['id']}{path}", user=user)
    assert status == 200, body
    assert _ops_since(env, before) == [op]


async def test_followed_log_of_the_owner_starts_with_its_first_read(env):
    """The ReadLog that checks ownership is also the stream's first slice: nothing read twice."""
    job = await _alices_job(env)
    env.fake.set_state(job["id"], "completed", exit_code=0)
    before = len(env.fake.requests)
    async with env.http.get(env.api + f"/jobs/{job['id']}/log?follow=1", headers=env.auth("alice")) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        text = (await resp.read()).decode()
    assert text.count("event: log") == 1 and '"text":"line\\n"' in text and "event: end" in text
    # one ReadLog (the log was complete), then the GetJob that gives the end event its state
    assert _ops_since(env, before) == [ReadLog, GetJob]
