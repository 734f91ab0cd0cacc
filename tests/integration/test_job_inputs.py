"""Job inputs, env, workdir, memory limits and the early 400s against a real `jobvisor up`."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest

from api_gateway.openapi import build_openapi
from jobvisor.job_limits import probe
from tests.harness import Api, ApiError, JobvisorProcess, job_form


async def submit_form(api: Api, job, files: dict[str, bytes]):
    return await api.request("POST", "/jobs", data=job_form(job, files))


async def until(check, timeout: float = 10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
async def configured(tmp_path):
    """start(**env) -> (process, api) of an `up` with settings of its own (SQLite)."""
    started = []

    async def start(**env: str):
        # SQLite in its own state dir, whatever database a `server` of the same test uses
        proc = JobvisorProcess(tmp_path / f"state{len(started)}", env={"JOBVISOR_DATABASE_URL": "", **env}).start()
        api = Api(proc.url, proc.token)
        started.append((proc, api))
        return proc, api

    yield start
    for proc, api in started:
        await api.close()
        proc.cleanup()


async def test_a_multipart_submit_places_its_files_and_env_and_a_resubmit_runs_with_them(server, api):
    script = b'#!/bin/sh\necho "FOO=$FOO"\ncat data/in.txt\n'
    job = await submit_form(api, {"code": "shell", "params": {"argv": ["./sim.sh"]}, "env": {"FOO": "bar"}},
                            {"sim.sh": script, "data/in.txt": b"input line\n"})
    assert job["inputs"] == [{"path": "data/in.txt", "size": 11}, {"path": "sim.sh", "size": len(script)}]
    assert job["env"] == {"FOO": "bar"}
    done = await api.wait_state(job["id"], {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    assert await api.log(job["id"]) == b"FOO=bar\ninput line\n"
    # a list of jobs: each gets every file
    jobs = await submit_form(api, [{"code": "shell", "params": {"argv": ["cat", "x.txt"]}}] * 2, {"x.txt": b"shared\n"})
    for j in jobs:
        assert (await api.wait_state(j["id"], {"completed", "failed"}))["state"] == "completed"
        assert await api.log(j["id"]) == b"shared\n"
    # the ended job's inputs stay ([supervisor] keep_inputs_days): a resubmit runs with them
    again = await api.request("POST", f"/jobs/{job['id']}/resubmit")
    assert again["inputs"] == job["inputs"] and again["env"] == {"FOO": "bar"}
    done = await api.wait_state(again["id"], {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    assert await api.log(again["id"]) == b"FOO=bar\ninput line\n"


async def test_ended_jobs_inputs_are_pruned_after_keep_inputs_days_and_a_resubmit_then_says_so(configured):
    for keep_days in ("0", str(2 / 86400)):  # deleted at the end; kept 2 s (pruned every second)
        proc, api = await configured(JOBVISOR_SUPERVISOR_KEEP_INPUTS_DAYS=keep_days)
        job = await submit_form(api, {"code": "shell", "params": {"argv": ["cat", "in.txt"]}}, {"in.txt": b"x\n"})
        assert (await api.wait_state(job["id"], {"completed", "failed"}))["state"] == "completed"
        kept = proc.state_dir / "inputs" / "jobs" / job["id"]
        if keep_days != "0":
            assert kept.is_dir()
        await until(lambda: not kept.exists())
        with pytest.raises(ApiError) as err:
            await api.request("POST", f"/jobs/{job['id']}/resubmit")
        assert err.value.status == 409, err.value.body
        assert "in.txt" in err.value.body["detail"] and "keep_inputs_days" in err.value.body["detail"]
        assert not any((proc.state_dir / "inputs" / "jobs").iterdir())  # the refused job left nothing


async def test_bad_forms_are_400_naming_the_part_and_too_many_bytes_are_413(configured):
    _, api = await configured(JOBVISOR_GATEWAY_MAX_INPUT_BYTES="1000")
    job = {"code": "shell", "params": {"argv": ["true"]}}
    for path, words in (("../x", "'..'"), ("/etc/passwd", "absolute"), (".jobvisor/status.json", "reserved")):
        with pytest.raises(ApiError) as bad:
            await submit_form(api, job, {path: b"x"})
        assert bad.value.status == 400 and bad.value.body["field"] == "file[0]" and words in bad.value.body["detail"]
    with pytest.raises(ApiError) as big:
        await submit_form(api, job, {"a.bin": b"x" * 600, "b.bin": b"y" * 600})
    assert big.value.status == 413 and "max_input_bytes" in big.value.body["detail"]
    no_job = aiohttp.FormData()
    no_job.add_field("file", b"x", filename="a.txt")
    with pytest.raises(ApiError) as missing:
        await api.request("POST", "/jobs", data=no_job)
    assert missing.value.status == 400 and missing.value.body["field"] == "job"
    with pytest.raises(ApiError) as code:
        await submit_form(api, {"code": "dmeo", "params": {}}, {"a.txt": b"x"})
    assert code.value.status == 400 and "did you mean 'demo'?" in code.value.body["detail"]
    assert (await api.request("GET", "/jobs"))["jobs"] == []  # nothing was submitted
    # a misspelled state or driver gets the nearest name too
    with pytest.raises(ApiError) as state:
        await api.request("GET", "/jobs", params={"state": "runing"})
    assert state.value.status == 400 and "unknown state 'runing'; did you mean 'running'?" in state.value.body["detail"]
    with pytest.raises(ApiError) as driver:
        await api.submit({"code": "shell", "params": {"argv": ["true"]}, "driver": "dokcer"})
    assert driver.value.status == 400 and "did you mean 'docker'?" in driver.value.body["detail"]


async def test_an_ended_job_says_its_peak_memory_and_cpu_time(server, api):
    burn = ("import time\nkept = b'x' * (80 << 20)\nstart = time.process_time()\n"
            "while time.process_time() - start < 0.3:\n    pass\n")
    job = await api.submit({"code": "shell", "params": {"argv": [sys.executable, "-c", burn]}})
    done = await api.wait_state(job["id"], {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    info = done["info"]
    assert 80 << 20 <= info["max_rss"] < 1 << 30 and 0.3 <= info["cpu_seconds"] < 30, info
    assert info["pid"] > 0


async def test_unknown_query_parameters_are_400_on_every_route(server, api):
    """Every route of the OpenAPI document, with a query parameter it does not declare."""
    done = await api.submit({"code": "shell", "params": {"argv": ["true"]}})
    await api.wait_state(done["id"], "completed")
    tried = 0
    for path, operations in build_openapi()["paths"].items():
        url = path.removeprefix("/api/v1").replace("{id}", done["id"]).replace("{path}", "output.log").replace("{name}", "x")
        for method in operations:
            async with api.session.request(method.upper(), api.url + url if path.startswith("/api/v1") else server.url + url,
                                           params={"nmae": "x"}, headers=api._headers()) as resp:
                body = await resp.json(content_type=None)
                assert resp.status == 400, (method, path, resp.status, body)
                assert body["field"] == "nmae" and "unknown query parameter 'nmae'" in body["detail"], body
                tried += 1
    assert tried >= 15
    # a declared one still works, and the token as a query parameter is accepted on a GET
    assert (await api.request("GET", "/jobs?state=completed&limit=5"))["jobs"][0]["id"] == done["id"]
    assert (await api.request("GET", f"/jobs?access_token={server.token}"))["jobs"]


async def test_memory_is_enforced_and_an_over_limit_job_fails_out_of_memory(server, api):
    status = await api.request("GET", "/status")
    local = status["drivers"]["local"]
    assert local["limits"] == probe().kind and local["why"]  # this machine's, said in `jobvisor status`
    hog = {"code": "shell", "params": {"argv": [sys.executable, "-c", "b = bytearray(800 * 1024 * 1024)"]},
           "resources": {"memory": "100M"}}
    job = await api.submit(hog)
    assert job["resources"]["memory"] == 100 * 1024**2
    done = await api.wait_state(job["id"], {"completed", "failed"})
    assert done["state"] == "failed" and done["reason"].startswith("out of memory"), done["reason"]
    bare = await api.submit({**hog, "resources": {"memory": 512}})  # a bare number: megabytes, as in Slurm
    assert bare["resources"]["memory"] == 512 * 1024**2
    await api.cancel(bare["id"])


async def test_inputs_survive_a_restart_of_up(tmp_path, configured):
    proc, api = await configured(JOBVISOR_LOCAL_CPUS="1")
    blocker = await api.submit({"code": "shell", "params": {"argv": ["sleep", "60"]}})
    await api.wait_state(blocker["id"], "running")
    waiting = await submit_form(api, {"code": "shell", "params": {"argv": ["cat", "in/data.txt"]}},
                                {"in/data.txt": b"kept across a crash\n"})
    assert waiting["state"] == "queued"
    proc.kill()  # SIGKILL: the queued job's inputs are only in the state dir
    proc.restart()
    api = Api(proc.url, api.token)  # its connections went with the old process
    try:
        await _after_restart(api, blocker, waiting)
    finally:
        await api.close()


async def _after_restart(api: Api, blocker: dict, waiting: dict) -> None:
    await api.cancel(blocker["id"])
    done = await api.wait_state(waiting["id"], {"completed", "failed"}, timeout=60)
    assert done["state"] == "completed", done["reason"]
    assert await api.log(waiting["id"]) == b"kept across a crash\n"


async def test_workdir_is_off_by_default_and_runs_in_place_where_allowed(tmp_path, server, api, configured):
    place = tmp_path / "allowed" / "case"
    place.mkdir(parents=True)
    (place / "input.txt").write_text("in place\n")
    job = {"code": "shell", "params": {"script": "cat input.txt; echo made > out.txt"}, "workdir": str(place)}
    with pytest.raises(ApiError) as off:
        await api.submit(job)
    assert off.value.status == 400 and off.value.body["field"] == "workdir"
    assert "[local] workdirs" in off.value.body["detail"]  # says how an admin allows it
    _, allowed = await configured(JOBVISOR_LOCAL_WORKDIRS=str(tmp_path / "allowed"))
    ran = await allowed.submit(job)
    done = await allowed.wait_state(ran["id"], {"completed", "failed"})
    assert done["state"] == "completed" and done["workdir"] == str(place.resolve())
    assert await allowed.log(ran["id"]) == b"in place\n" and (place / "out.txt").read_text() == "made\n"
    with pytest.raises(ApiError) as outside:
        await allowed.submit({**job, "workdir": str(tmp_path)})
    assert outside.value.status == 400 and "not under" in outside.value.body["detail"]


async def test_inputs_are_linked_on_one_file_system_and_sent_as_bytes_across_two(tmp_path, configured):
    """The local driver hard-links an input into the run dir where it can; with run dirs on
    another file system (here tmpfs) the bytes go in slices instead of a copy by the agent."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system at /dev/shm")
    big = os.urandom(600_000)
    for run_root, linked in ((tmp_path / "runs", True), (shm / f"jobvisor-test-{os.getpid()}-{tmp_path.name}", False)):
        proc, api = await configured(JOBVISOR_LOCAL_RUN_ROOT=str(run_root), JOBVISOR_SUPERVISOR_MAX_MESSAGE_BYTES="1048576")
        try:
            # while it runs, the state dir still keeps its input: a link makes two names of one file
            job = await submit_form(api, {"code": "shell", "params": {"argv": ["stat", "-c", "%h", "in/big.bin"]}},
                                    {"in/big.bin": big})
            done = await api.wait_state(job["id"], {"completed", "failed"})
            assert done["state"] == "completed", done["reason"]
            assert (run_root / "admin" / job["id"] / "in" / "big.bin").read_bytes() == big
            assert await api.log(job["id"]) == (b"2\n" if linked else b"1\n")
        finally:
            shutil.rmtree(run_root, ignore_errors=True)
