"""Job routes: validation, ownership, paging, batches, error shapes. Against the real
supervisor and real agents (`real`), except where a test needs the fake's controls (`env`)."""

from __future__ import annotations

import json

import pytest

from api_gateway.openapi import build_openapi
from jobvisor.protocol.job_requests import GetJob, SubmitJobs

from gateway_env import MAX_BODY

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def assert_problem(status, body, headers, expected):
    assert status == expected, body
    assert headers["Content-Type"].startswith(PROBLEM)
    assert body["status"] == expected and body["title"] and body["detail"]


async def test_submit_validates_and_translates_resources(real):
    job = await real.submit(
        resources={"cpus": 2, "memory": "512M", "walltime": "01:00:00"}, driver="local", max_retries=3, name="sim"
    )
    assert job["resources"]["memory"] == 512 * 1024 * 1024
    assert job["resources"]["walltime"] == 3600.0
    assert job["max_retries"] == 3 and job["name"] == "sim"
    spec = real.requests[-1].jobs[0]
    assert spec.resources["cpus"] == 2 and spec.driver == "local"


async def test_single_submit_answers_201_with_location(real):
    status, body, headers = await real.call("POST", "/jobs", json={"code": "shell", "params": {"argv": ["x"]}})
    assert status == 201
    assert headers["Location"] == f"/api/v1/jobs/{body['id']}"


async def test_another_users_job_is_404_like_a_missing_one(real):
    job = await real.submit(user="alice", params={"argv": ["sleep", "30"]})
    await real.wait_state(job["id"], "running")
    for method, path in (
        ("GET", f"/jobs/{job['id']}"),
        ("POST", f"/jobs/{job['id']}/cancel"),
        ("GET", f"/jobs/{job['id']}/log"),
        ("GET", f"/jobs/{job['id']}/files"),
        ("GET", f"/jobs/{job['id']}/files/out.txt"),
        ("POST", f"/jobs/{job['id']}/analysis"),
    ):
        status, body, headers = await real.call(method, path, user="bob")
        assert_problem(status, body, headers, 404)
    missing = await real.call("GET", "/jobs/j0000000000000000000", user="bob")
    assert missing[0] == 404
    # admins see every job; bob's cancel never reached it
    status, body, _ = await real.call("GET", f"/jobs/{job['id']}", user="root")
    assert status == 200 and body["owner"] == "alice" and body["state"] == "running"
    status, body, _ = await real.call("GET", "/jobs", user="bob")
    assert status == 200 and body["jobs"] == []


async def test_malformed_json_is_400_naming_the_problem(real):
    status, body, headers = await real.call(
        "POST", "/jobs", data=b'{"code": "shell", "params": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(status, body, headers, 400)
    assert "not valid JSON" in body["detail"] and body["field"] == "body"
    status, body, headers = await real.call("POST", "/jobs", data=b"")
    assert_problem(status, body, headers, 400)
    assert "empty" in body["detail"]


async def test_wrong_field_types_are_400_naming_the_field(real):
    cases = [
        ({"params": {}}, "code"),
        ({"code": "", "params": {}}, "code"),
        ({"code": "shell"}, "params"),
        ({"code": "shell", "params": {}, "resources": {"cpus": "two"}}, "resources.cpus"),
        ({"code": "shell", "params": {}, "resources": {"memory": "lots"}}, "resources.memory"),
        ({"code": "shell", "params": {}, "resources": []}, "resources"),
        ({"code": "shell", "params": {}, "max_retries": 101}, "max_retries"),
        ({"code": "shell", "params": {}, "max_retries": True}, "max_retries"),
        ({"code": "shell", "params": {}, "driver": 3}, "driver"),
        ({"code": "shell", "params": {}, "name": ["x"]}, "name"),
        ({"code": "shell", "params": {}, "resource": {}}, "resource"),
        ("just a string", "body"),
    ]
    for payload, field in cases:
        status, body, headers = await real.call("POST", "/jobs", json=payload)
        assert_problem(status, body, headers, 400)
        assert body["field"] == field, (payload, body)
        assert field.split(".")[-1] in body["detail"] or field == "body" or field == "resource", body
    status, body, _ = await real.call("POST", "/jobs", json=[{"code": "a", "params": 1}, {"code": 5, "params": 1}])
    assert status == 400 and body["field"] == "jobs[1].code"
    assert not any(isinstance(r, SubmitJobs) for r in real.requests)


async def test_bad_query_values_are_400(real):
    status, body, headers = await real.call("GET", "/jobs?limit=lots")
    assert_problem(status, body, headers, 400)
    assert body["field"] == "limit"
    status, body, _ = await real.call("GET", "/jobs?state=sleeping")
    assert status == 400 and body["field"] == "state" and "sleeping" in body["detail"]
    status, body, _ = await real.call("GET", "/jobs/x/log?offset=-1")
    assert status == 400 and body["field"] == "offset"


async def test_oversized_body_is_413_problem(real):
    big = json.dumps({"code": "shell", "params": {"blob": "x" * (MAX_BODY + 10)}})
    status, body, headers = await real.call("POST", "/jobs", data=big, headers={"Content-Type": "application/json"})
    assert_problem(status, body, headers, 413)


async def test_unknown_route_and_wrong_method_are_problems(real):
    status, body, headers = await real.call("GET", "/nothing/here")
    assert_problem(status, body, headers, 404)
    async with real.http.get(real.gateway.url + "/favicon.ico") as resp:
        assert resp.status == 404 and resp.headers["Content-Type"].startswith(PROBLEM)
    status, body, headers = await real.call("DELETE", "/jobs")
    assert_problem(status, body, headers, 405)
    assert "GET" in headers["Allow"]


async def test_batch_submit_is_one_op(real):
    before = len(real.requests)
    jobs = [{"code": "shell", "params": {"argv": ["true"]}}] * 1200  # under the 64 KiB test body limit
    status, body, _ = await real.call("POST", "/jobs", json=jobs)
    assert status == 201 and isinstance(body, list) and len(body) == 1200
    assert len({job["id"] for job in body}) == 1200
    submits = [r for r in real.requests[before:] if isinstance(r, SubmitJobs)]
    assert len(submits) == 1 and len(submits[0].jobs) == 1200
    status, body, _ = await real.call("POST", "/jobs", json=[])
    assert status == 400 and body["field"] == "jobs"


async def test_paging_follows_next_and_link_newest_first(real):
    status, body, _ = await real.call("POST", "/jobs", json=[{"code": "shell", "params": {"argv": ["true", str(i)]}} for i in range(25)])
    assert status == 201
    await real.submit(user="bob")
    seen, after, pages = [], "", 0
    while True:
        status, body, headers = await real.call("GET", f"/jobs?limit=10&after={after}")
        assert status == 200
        pages += 1
        seen += [job["id"] for job in body["jobs"]]
        if body["next"] is None:
            assert "Link" not in headers
            break
        assert 'rel="next"' in headers["Link"] and f"after={body['next']}" in headers["Link"]
        after = body["next"]
        assert pages < 10
    assert pages == 3 and len(seen) == 25 and seen == sorted(seen, reverse=True)


async def test_state_filter(real):
    done = await real.submit(params={"argv": ["true"]})
    await real.wait_state(done["id"], "completed")
    running = await real.submit(params={"argv": ["sleep", "30"]})
    await real.wait_state(running["id"], "running")
    status, body, _ = await real.call("GET", "/jobs?state=running,failed")
    assert status == 200 and [j["id"] for j in body["jobs"]] == [running["id"]]
    status, body, _ = await real.call("GET", "/jobs?state=completed")
    assert [j["id"] for j in body["jobs"]] == [done["id"]]


async def test_cancel_and_conflict(real):
    job = await real.submit(params={"argv": ["sleep", "30"]})
    await real.wait_state(job["id"], "running")
    status, body, _ = await real.call("POST", f"/jobs/{job['id']}/cancel")
    assert status == 200 and body["id"] == job["id"]
    await real.wait_state(job["id"], "canceled")
    status, body, headers = await real.call("POST", f"/jobs/{job['id']}/cancel")
    assert_problem(status, body, headers, 409)


async def test_show_has_every_documented_field(real):
    job = await real.submit()
    await real.wait_state(job["id"], "completed")
    status, body, _ = await real.call("GET", f"/jobs/{job['id']}")
    assert status == 200
    documented = build_openapi()["components"]["schemas"]["JobDetail"]["required"]
    assert sorted(body) == sorted(documented)
    assert [h["state"] for h in body["history"]] == ["queued", "starting", "running", "completed"]
    assert any(isinstance(r, GetJob) for r in real.requests)


async def test_supervisor_down_is_503(env):
    await env.fake.close()
    status, body, headers = await env.call("GET", "/jobs")
    assert_problem(status, body, headers, 503)
    assert "unreachable" in body["detail"]
    status, body, _ = await env.call("GET", "/status", user=None)
    assert status == 503


async def test_queue_and_agents_are_filtered_for_users(env):
    await env.submit(user="alice")
    await env.submit(user="bob")
    status, body, _ = await env.call("GET", "/queue", user="alice")
    assert status == 200 and {j["owner"] for j in body["jobs"]} == {"alice"}
    assert body["drivers"]["local"]["queued"] == 2
    status, body, _ = await env.call("GET", "/queue", user="root")
    assert {j["owner"] for j in body["jobs"]} == {"alice", "bob"}
    status, body, _ = await env.call("GET", "/agents", user="bob")
    assert [a["user"] for a in body["agents"]] == ["bob"]
    status, body, _ = await env.call("GET", "/agents", user="root")
    assert len(body["agents"]) == 2


async def test_analysis_passes_args(env):
    job = await env.submit()
    status, body, _ = await env.call("POST", f"/jobs/{job['id']}/analysis", json={"plot": "energy"})
    assert status == 200 and body["result"] == {"job": job["id"], "args": {"plot": "energy"}}
    status, body, _ = await env.call("POST", f"/jobs/{job['id']}/analysis", json=[1])
    assert status == 400 and body["field"] == "body"
