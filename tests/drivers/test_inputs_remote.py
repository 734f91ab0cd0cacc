"""Job inputs where the agent cannot see the supervisor's files: their bytes travel in the run
(or ahead of it in InputChunk slices under the message limit), on a real Docker engine and on
the real Slurm testbed. A 1 MiB message limit makes a 3 MiB file go in twelve slices."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from tests.contract.backends import BACKENDS, require
from tests.drivers import dockerbed, slurmbed
from tests.harness import Api, ApiError, JobvisorProcess, job_form

pytestmark = pytest.mark.integration

SMALL_LIMIT = str(1024 * 1024)  # [supervisor] max_message_bytes of these servers (and their agents)
BIG = os.urandom(3 * 1024 * 1024 + 5)
SCRIPT = "sha256sum big.bin | cut -d' ' -f1; cat notes/small.txt; echo \"$FOO\""


def form(job: dict):
    return job_form(job, {"big.bin": BIG, "notes/small.txt": b"small one\n"})


def expected_log() -> bytes:
    return f"{hashlib.sha256(BIG).hexdigest()}\nsmall one\nbar\n".encode()


async def test_inputs_reach_a_docker_agent_as_bytes_in_slices(tmp_path):
    require(BACKENDS["docker"])
    server = JobvisorProcess(tmp_path / "state", env={**dockerbed.server_env(),
                                                       "JOBVISOR_SUPERVISOR_MAX_MESSAGE_BYTES": SMALL_LIMIT})
    await asyncio.to_thread(server.start)
    api = Api(server.url, server.token)
    try:
        job = {"code": "shell", "params": {"script": SCRIPT}, "driver": "docker", "env": {"FOO": "bar"}}
        submitted = await api.request("POST", "/jobs", data=form(job))
        done = await api.wait_state(submitted["id"], {"completed", "failed"}, timeout=90)
        assert done["state"] == "completed", done["reason"]
        assert await api.log(submitted["id"]) == expected_log()
    finally:
        await api.close()
        server.cleanup()
        dockerbed.remove_containers(server.state_dir)


async def test_inputs_reach_a_slurm_job_as_bytes_in_slices(make_server, monkeypatch):
    monkeypatch.setenv("JOBVISOR_SUPERVISOR_MAX_MESSAGE_BYTES", SMALL_LIMIT)
    server = make_server()
    api = Api(server.url, server.token)
    try:
        await api.request("POST", f"/clusters/{slurmbed.CLUSTER}/login", json={"username": slurmbed.user(), "method": "key"})
        job = {"code": "shell", "params": {"script": SCRIPT}, "driver": "sbatch", "env": {"FOO": "bar"},
               "resources": {"cluster": slurmbed.CLUSTER}}
        submitted = await api.request("POST", "/jobs", data=form(job))
        done = await api.wait_state(submitted["id"], {"completed", "failed"}, timeout=120)
        assert done["state"] == "completed", done["reason"]
        assert await api.log(submitted["id"]) == expected_log()
    finally:
        await api.close()


async def test_a_docker_agent_with_this_machines_runtime_refuses_an_unknown_code_at_submit(tmp_path):
    require(BACKENDS["docker"])
    server = JobvisorProcess(tmp_path / "state", env=dockerbed.server_env())  # host_runtime: these codes
    await asyncio.to_thread(server.start)
    api = Api(server.url, server.token)
    try:
        with pytest.raises(ApiError) as refused:
            await api.submit({"code": "pyhton", "params": {}, "driver": "docker"})
        assert refused.value.status == 400 and refused.value.body["field"] == "code"
        assert "did you mean 'python'?" in refused.value.body["detail"]
    finally:
        await api.close()
        server.cleanup()
