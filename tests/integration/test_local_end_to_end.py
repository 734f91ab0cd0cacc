"""The spine end to end on the local driver: `jobvisor up` in a subprocess, real agents and
jobs, the HTTP API and the CLI as a user drives them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aiohttp
import pytest

from jobvisor.protocol.common import PROTOCOL_VERSION
from tests.harness import REPO, Api, ApiError, JobvisorProcess

pytestmark = pytest.mark.integration

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool,
    "object": dict, "array": list, "null": type(None),
}


def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _response_schema(doc: dict, path: str, method: str, status: str) -> dict:
    return doc["paths"]["/api/v1" + path][method]["responses"][status]["content"]["application/json"]["schema"]


def assert_fits(doc: dict, schema: dict, value, where: str = "body") -> None:
    """`value` is what `schema` says, to the keys: every key it has is a documented property,
    every required property is there, and types and enums hold (a small JSON Schema subset:
    the one openapi.py writes)."""
    schema = _resolve(doc, schema)
    if "oneOf" in schema:
        failures = []
        for option in schema["oneOf"]:
            try:
                assert_fits(doc, option, value, where)
            except AssertionError as exc:
                failures.append(str(exc))
            else:
                return
        raise AssertionError(f"{where} fits none of oneOf: {failures}")
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        assert any(
            isinstance(value, _JSON_TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
            for t in types
        ), f"{where} = {value!r} is not {types}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where} = {value!r} is not one of {schema['enum']}"
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        assert set(value) <= set(props), f"{where} has keys the schema lacks: {sorted(set(value) - set(props))}"
        missing = set(schema.get("required", ())) - set(value)
        assert not missing, f"{where} lacks required keys {sorted(missing)}"
        for key, item in value.items():
            assert_fits(doc, props[key], item, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            assert_fits(doc, schema["items"], item, f"{where}[{i}]")


async def test_submit_run_complete_over_http(api):
    job = await api.submit({"code": "shell", "params": {"argv": ["python", "-c", "print(42)"]},
                            "resources": {"cpus": 1, "memory": "512M", "walltime": "00:05:00"}, "name": "answer"})
    assert job["state"] == "queued" and job["name"] == "answer" and job["attempt"] == 1
    done = await api.wait_state(job["id"], "completed")
    assert done["exit_code"] == 0 and done["finished_at"] and done["started_at"]
    assert await api.log(job["id"]) == b"42\n"
    assert [h["state"] for h in done["history"]] == ["queued", "starting", "running", "completed"]


async def test_jobs_are_exactly_what_the_openapi_document_says(api):
    """The Job schemas list every key the real supervisor answers, and it answers every required
    one: a field added on either side without the other fails here."""
    doc = await api.request("GET", "/openapi.json")
    submitted = await api.submit({"code": "python", "params": {"entry": "json:dumps", "args": {"obj": [1]}}})
    assert_fits(doc, _response_schema(doc, "/jobs", "post", "201"), submitted, "submit")
    done = await api.wait_state(submitted["id"], {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    assert_fits(doc, _response_schema(doc, "/jobs/{id}", "get", "200"), done, "GET /jobs/{id}")
    assert done["history"] and done["agent_id"]  # the keys the schema once lacked, with values
    page = await api.request("GET", "/jobs")
    assert_fits(doc, _response_schema(doc, "/jobs", "get", "200"), page, "GET /jobs")
    assert submitted["id"] in {job["id"] for job in page["jobs"]}
    batch = await api.submit([{"code": "shell", "params": {"argv": ["sleep", "60"]}}])
    assert_fits(doc, _response_schema(doc, "/jobs", "post", "201"), batch, "batch submit")
    canceled = await api.cancel(batch[0]["id"])
    assert_fits(doc, _response_schema(doc, "/jobs/{id}/cancel", "post", "200"), canceled, "cancel")


async def test_python_code_result_is_stored(api, tmp_path):
    job = await api.submit({"code": "python", "params": {"entry": "json:dumps", "args": {"obj": [1, 2]}}})
    done = await api.wait_state(job["id"], {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    assert done["result"] == "[1, 2]"


async def test_batch_submit_and_listing_by_state(api):
    jobs = await api.submit([{"code": "shell", "params": {"argv": ["true"]}} for _ in range(20)])
    assert len(jobs) == 20 and len({j["id"] for j in jobs}) == 20
    for job in jobs:
        await api.wait_state(job["id"], "completed")
    listed = await api.request("GET", "/jobs?state=completed&limit=10")
    assert len(listed["jobs"]) == 10 and all(j["state"] == "completed" for j in listed["jobs"])


async def test_cancel_a_running_sleep(api):
    job = await api.submit({"code": "shell", "params": {"argv": ["sleep", "60"]}})
    running = await api.wait_state(job["id"], "running")
    pid = running["info"]["pid"]
    await api.cancel(job["id"])
    done = await api.wait_state(job["id"], "canceled", timeout=15)
    assert done["reason"] == "canceled by user"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ApiError) as info:  # it has ended: a conflict that names its state
        await api.cancel(job["id"])
    assert info.value.status == 409 and "already ended (canceled)" in info.value.body["detail"]


async def test_walltime_ends_the_run_as_timed_out(api):
    job = await api.submit({"code": "shell", "params": {"argv": ["sleep", "60"]}, "resources": {"walltime": 1}})
    done = await api.wait_state(job["id"], "timed_out", timeout=20)
    assert "walltime" in done["reason"]


async def test_failed_job_has_exit_code(api):
    failing = await api.submit({"code": "shell", "params": {"script": "echo oops >&2; exit 3"}})
    done = await api.wait_state(failing["id"], "failed")
    assert done["exit_code"] == 3 and b"oops" in await api.log(failing["id"])


async def test_two_users_cannot_see_each_others_jobs_logs_or_files(server, api):
    out = subprocess.run([sys.executable, "-m", "jobvisor", "user", "add", "bob", "--state-dir", str(server.state_dir)],
                         capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    bob = Api(server.url, out.stdout.strip().splitlines()[-1])
    try:
        job = await api.submit({"code": "shell", "params": {"script": "echo secret > data.txt; echo secret"}})
        await api.wait_state(job["id"], "completed")
        for path in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/log", f"/jobs/{job['id']}/files",
                     f"/jobs/{job['id']}/files/data.txt"):
            with pytest.raises(ApiError) as info:
                await bob.request("GET", path)
            assert info.value.status == 404, path
        with pytest.raises(ApiError) as info:
            await bob.request("POST", f"/jobs/{job['id']}/cancel")
        assert info.value.status == 404
        assert (await bob.request("GET", "/jobs"))["jobs"] == []
        assert (await api.request("GET", f"/jobs/{job['id']}/files/data.txt")) == b"secret\n"
    finally:
        await bob.close()


async def test_path_escapes_on_files_are_refused(api):
    job = await api.submit({"code": "shell", "params": {"script": "ln -s /etc/passwd link; echo x > ok.txt"}})
    await api.wait_state(job["id"], "completed")
    files = await api.request("GET", f"/jobs/{job['id']}/files")
    assert "ok.txt" in {f["path"] for f in files["files"]}
    for bad in ("link", "..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "../x"):
        with pytest.raises(ApiError) as info:
            await api.request("GET", f"/jobs/{job['id']}/files/{bad}")
        assert info.value.status in (400, 403, 404), bad
        assert b"root:" not in json.dumps(info.value.body).encode()


async def test_events_stream_shows_the_users_transitions(server, api):
    headers = {"Authorization": f"Bearer {server.token}"}
    seen = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/api/v1/events", headers=headers) as resp:
            assert resp.status == 200
            job = await api.submit({"code": "shell", "params": {"argv": ["true"]}})

            async def read():
                async for raw in resp.content:
                    line = raw.decode().strip()
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        if event.get("job_id") == job["id"] and event["kind"] == "transition":
                            seen.append(event["data"]["state"])
                            if event["data"]["state"] == "completed":
                                return

            await asyncio.wait_for(read(), 30)
    assert seen[0] == "queued" and seen[-1] == "completed"


async def test_status_needs_no_token_and_jobs_need_one(server):
    anonymous = Api(server.url, None)
    try:
        status = await anonymous.request("GET", "/status")
        assert status["protocol_version"] == PROTOCOL_VERSION
        with pytest.raises(ApiError) as info:
            await anonymous.request("GET", "/jobs")
        assert info.value.status == 401
    finally:
        await anonymous.close()


def test_cli_submit_wait_logs_show_list(server):
    env = {**os.environ, "JOBVISOR_URL": server.url, "JOBVISOR_TOKEN": server.token}

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jobvisor", *args], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=60, check=check)

    job_id = cli("submit", "--", "python", "-c", "print(42)").stdout.strip()
    waited = cli("wait", job_id)
    assert "completed" in waited.stdout and "exit code 0" in waited.stdout
    assert cli("logs", job_id).stdout == "42\n"
    assert job_id in cli("list").stdout
    assert "completed" in cli("show", job_id).stdout
    failing = cli("submit", "--", "false").stdout.strip()
    assert cli("wait", failing, check=False).returncode != 0


async def test_gateway_and_supervisor_over_http(tmp_path):
    """`in_process = false`: the gateway reaches the supervisor over HTTP, as on two hosts."""
    from tests.harness import JobvisorProcess

    server = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_SERVER_IN_PROCESS": "false"}).start()
    client = Api(server.url, server.token)
    try:
        status = await client.request("GET", "/status")
        assert status["gateway"]["events_connected"] is True
        job = await client.submit({"code": "shell", "params": {"argv": ["echo", "over http"]}})
        done = await client.wait_state(job["id"], "completed")
        assert done["exit_code"] == 0 and await client.log(job["id"]) == b"over http\n"
    finally:
        await client.close()
        server.cleanup()


async def test_demo_job_progress_files_and_analysis(api):
    """The README's quick start: the demo simulation reports progress, writes data.csv and a
    PNG plot, and its analysis returns summary numbers."""
    job = await api.submit({"code": "demo", "params": {"steps": 400, "step_delay": 0.002}})
    done = await api.wait_state(job["id"], {"completed", "failed"}, timeout=60)
    assert done["state"] == "completed", done["reason"]
    assert done["progress"] == 1.0
    files = {f["path"]: f["size"] for f in (await api.request("GET", f"/jobs/{job['id']}/files"))["files"]}
    assert files["data.csv"] > 0 and files["plot.png"] > 0
    png = await api.request("GET", f"/jobs/{job['id']}/files/plot.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) == files["plot.png"]
    summary = (await api.request("POST", f"/jobs/{job['id']}/analysis", json={}))["result"]
    assert summary["rows"] == 401 or summary["rows"] == 400


async def test_queue_positions_are_fair_and_seen_everywhere(tmp_path):
    """One slot, no sending ahead: the admin's three waiting jobs and bob's one are served
    round-robin, and every view (the submit's answer, a job, a listing, the queue) agrees."""
    server = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_LOCAL_CPUS": "1", "JOBVISOR_SUPERVISOR_PREFETCH": "0"})
    server.start()
    admin = Api(server.url, server.token)
    out = subprocess.run([sys.executable, "-m", "jobvisor", "user", "add", "bob", "--state-dir", str(server.state_dir)],
                         capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    bob = Api(server.url, out.stdout.strip().splitlines()[-1])
    sleep = {"code": "shell", "params": {"argv": ["sleep", "120"]}}
    try:
        first = await admin.submit(sleep)
        await admin.wait_state(first["id"], "running")
        waiting = await admin.submit([sleep, sleep, sleep])
        assert [j["queue_position"] for j in waiting] == [1, 2, 3]
        (bobs,) = await bob.submit([sleep])
        assert bobs["queue_position"] == 2  # round-robin: bob's first job right after the admin's first
        expected = {waiting[0]["id"]: 1, bobs["id"]: 2, waiting[1]["id"]: 3, waiting[2]["id"]: 4}
        listed = (await admin.request("GET", "/jobs?state=queued"))["jobs"]
        assert {j["id"]: j["queue_position"] for j in listed} == expected
        assert (await admin.job(waiting[2]["id"]))["queue_position"] == 4
        assert (await admin.job(first["id"]))["queue_position"] is None
        queue = await admin.request("GET", "/queue")
        assert [(j["id"], j["queue_position"]) for j in queue["jobs"]] == sorted(expected.items(), key=lambda kv: kv[1])
        assert queue["drivers"]["local"]["queued"] == 4 and queue["drivers"]["local"]["cpus_used"] == 1
        assert [(j["id"], j["queue_position"]) for j in (await bob.request("GET", "/queue"))["jobs"]] == [(bobs["id"], 2)]
        await admin.cancel(waiting[0]["id"])  # the admin's next job takes its place, ahead of bob's
        assert (await bob.job(bobs["id"]))["queue_position"] == 2
        listed = (await admin.request("GET", "/jobs?state=queued"))["jobs"]
        assert {j["id"]: j["queue_position"] for j in listed} == {waiting[1]["id"]: 1, bobs["id"]: 2, waiting[2]["id"]: 3}
    finally:
        await admin.close()
        await bob.close()
        server.cleanup()
